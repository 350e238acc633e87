// UTF-8 helpers and the tojson serializer (Python json.dumps semantics).
#include <algorithm>
#include <cmath>

#include "tokenizer/template/value.h"

namespace fs::jinja {

std::vector<std::string_view> utf8_chars(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    if (i + n > s.size()) n = 1;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) {
        n = 1;
        break;
      }
    }
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xc0) != 0x80) ++n;
  }
  return n;
}

bool is_python_space(std::string_view ch) {
  if (ch.size() == 1) {
    unsigned char c = static_cast<unsigned char>(ch[0]);
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  }
  static constexpr std::string_view kSpaces[] = {"\u0085", "\u00a0", "\u1680", "\u2000", "\u2001",
                                                 "\u2002", "\u2003", "\u2004", "\u2005", "\u2006",
                                                 "\u2007", "\u2008", "\u2009", "\u200a", "\u2028",
                                                 "\u2029", "\u202f", "\u205f", "\u3000"};
  return std::find(std::begin(kSpaces), std::end(kSpaces), ch) != std::end(kSpaces);
}

namespace {

uint32_t decode_utf8(std::string_view ch) {
  unsigned char c0 = static_cast<unsigned char>(ch[0]);
  if (ch.size() == 1) return c0;
  uint32_t cp = c0 & (0x7f >> ch.size());
  for (size_t i = 1; i < ch.size(); ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(ch[i]) & 0x3f);
  return cp;
}

void json_string(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  for (std::string_view chv : utf8_chars(s)) {
    if (chv.size() > 1 || static_cast<unsigned char>(chv[0]) >= 0x80) {
      if (!ensure_ascii) {
        out += chv;
        continue;
      }
      uint32_t cp = decode_utf8(chv);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else {
        out += fmt::format("\\u{:04x}", cp);
      }
      continue;
    }
    char ch = chv[0];
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

struct JsonWriter {
  int indent;
  std::string item_sep;
  std::string key_sep;
  bool sort_keys;
  bool ensure_ascii;
  std::string out;

  void newline(int depth) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * depth, ' ');
  }

  Status write(const Value& v, int depth) {
    if (depth > 256) return invalid_argument("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::kNone:
        out += "null";
        return Status::ok();
      case Value::Kind::kBool:
        out += v.as_bool() ? "true" : "false";
        return Status::ok();
      case Value::Kind::kInt:
        out += std::to_string(v.as_int());
        return Status::ok();
      case Value::Kind::kFloat: {
        double d = v.as_double();
        out += std::isnan(d)   ? "NaN"
               : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity")
                               : python_float_repr(d);
        return Status::ok();
      }
      case Value::Kind::kString:
        json_string(v.as_string(), ensure_ascii, out);
        return Status::ok();
      case Value::Kind::kList: {
        if (v.items().empty()) {
          out += "[]";
          return Status::ok();
        }
        out += '[';
        for (size_t i = 0; i < v.items().size(); ++i) {
          if (i > 0) out += item_sep;
          if (indent >= 0) newline(depth + 1);
          FS_RETURN_IF_ERROR(write(v.items()[i], depth + 1));
        }
        if (indent >= 0) newline(depth);
        out += ']';
        return Status::ok();
      }
      case Value::Kind::kDict: {
        if (v.dict().items.empty()) {
          out += "{}";
          return Status::ok();
        }
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& e : v.dict().items) entries.push_back(&e);
        if (sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](auto* a, auto* b) { return a->first < b->first; });
        }
        out += '{';
        for (size_t i = 0; i < entries.size(); ++i) {
          if (i > 0) out += item_sep;
          if (indent >= 0) newline(depth + 1);
          json_string(dict_key_value(entries[i]->first).str(), ensure_ascii, out);
          out += key_sep;
          FS_RETURN_IF_ERROR(write(entries[i]->second, depth + 1));
        }
        if (indent >= 0) newline(depth);
        out += '}';
        return Status::ok();
      }
      case Value::Kind::kUndefined:
      case Value::Kind::kNamespace:
      case Value::Kind::kCallable:
        break;
    }
    return invalid_argument("tojson: object of type {} is not JSON serializable", v.type_name());
  }
};

}  // namespace

Result<std::string> to_json(const Value& v, int indent, const std::string& item_sep,
                            const std::string& key_sep, bool sort_keys, bool ensure_ascii) {
  JsonWriter w{indent, item_sep, key_sep, sort_keys, ensure_ascii, {}};
  FS_RETURN_IF_ERROR(w.write(v, 0));
  return std::move(w.out);
}

}  // namespace fs::jinja
