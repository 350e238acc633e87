// Python str/dict semantics: the methods templates call and the helpers filters share.
#include <algorithm>

#include "tokenizer/template/builtins.h"

namespace fs::jinja {

const Value* CallArgs::get(size_t index, std::string_view key) const {
  if (index < args.size()) return &args[index];
  for (const auto& [k, v] : kwargs) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  auto cs = utf8_chars(s);
  std::vector<std::string_view> strip_set;
  if (chars != nullptr) strip_set = utf8_chars(*chars);
  auto strip = [&](std::string_view ch) {
    if (chars == nullptr) return is_python_space(ch);
    return std::find(strip_set.begin(), strip_set.end(), ch) != strip_set.end();
  };
  size_t b = 0, e = cs.size();
  while (left && b < e && strip(cs[b])) ++b;
  while (right && e > b && strip(cs[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cs[i];
  return out;
}

std::vector<std::string> py_split(const std::string& s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep == nullptr) {
    auto cs = utf8_chars(s);
    size_t i = 0;
    while (i < cs.size()) {
      while (i < cs.size() && is_python_space(cs[i])) ++i;
      if (i >= cs.size()) break;
      std::string word;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
        for (; i < cs.size(); ++i) word += cs[i];
        // Python keeps the remainder as is, minus trailing whitespace.
        out.push_back(py_strip(word, nullptr, false, true));
        break;
      }
      while (i < cs.size() && !is_python_space(cs[i])) word += cs[i++];
      out.push_back(std::move(word));
    }
    return out;
  }
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t at = s.find(*sep, start);
    if (at == std::string::npos) break;
    out.push_back(s.substr(start, at - start));
    start = at + sep->size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to,
                       int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` around every character
    auto cs = utf8_chars(s);
    int64_t n = 0;
    for (auto ch : cs) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      out += ch;
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  size_t start = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += to;
    start = at + from.size();
    ++n;
  }
  out.append(s, start, std::string::npos);
  return out;
}

std::string py_upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}
std::string py_lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    if (is_alpha(c)) {
      c = prev_cased ? py_lower(std::string(1, c))[0] : py_upper(std::string(1, c))[0];
      prev_cased = true;
    } else {
      prev_cased = static_cast<unsigned char>(c) >= 0x80 && prev_cased;
    }
  }
  return out;
}
std::string py_capitalize(const std::string& s) {
  std::string out = py_lower(s);
  if (!out.empty()) out[0] = py_upper(out.substr(0, 1))[0];
  return out;
}

Result<bool> py_less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list()) {
    size_t n = std::min(a.items().size(), b.items().size());
    for (size_t i = 0; i < n; ++i) {
      if (values_equal(a.items()[i], b.items()[i])) continue;
      return py_less(a.items()[i], b.items()[i]);
    }
    return a.items().size() < b.items().size();
  }
  if (a.is_undefined()) return invalid_argument("{}", a.as_string());
  if (b.is_undefined()) return invalid_argument("{}", b.as_string());
  return invalid_argument("'<' not supported between instances of '{}' and '{}'", a.type_name(),
                          b.type_name());
}

Result<std::vector<Value>> py_iterate(const Value& v) {
  std::vector<Value> out;
  if (v.is_list()) return v.items();
  if (v.is_dict()) {
    for (const auto& [k, _] : v.dict().items) out.push_back(dict_key_value(k));
    return out;
  }
  if (v.is_string()) {
    for (auto ch : utf8_chars(v.as_string())) out.push_back(Value::string(std::string(ch)));
    return out;
  }
  if (v.is_undefined()) return out;
  return invalid_argument("'{}' object is not iterable", v.type_name());
}

Result<int64_t> py_len(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(utf8_length(v.as_string()));
  if (v.is_list()) return static_cast<int64_t>(v.items().size());
  if (v.is_mapping()) return static_cast<int64_t>(v.dict().items.size());
  if (v.is_undefined()) return 0;
  return invalid_argument("object of type '{}' has no len()", v.type_name());
}

Value py_getattr(const Value& obj, const std::string& name) {
  if (obj.is_mapping()) {
    if (const Value* v = obj.dict().find(name)) return *v;
  }
  return Value::undefined(fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
}

Value py_getitem(const Value& obj, const Value& key) {
  if (obj.is_mapping()) {
    std::optional<std::string> k = dict_key(key);
    if (k) {
      if (const Value* v = obj.dict().find(*k)) return *v;
    }
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.items()[static_cast<size_t>(i)];
    } else {
      auto cs = utf8_chars(obj.as_string());
      int64_t n = static_cast<int64_t>(cs.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value::string(std::string(cs[static_cast<size_t>(i)]));
    }
    return Value::undefined(
        fmt::format("{} object has no element {}", obj.type_name(), key.as_int()));
  }
  return Value::undefined(
      fmt::format("'{} object' has no attribute '{}'", obj.type_name(), key.str()));
}

namespace {

Result<const std::string*> optional_string(const CallArgs& args, size_t i, std::string_view key) {
  const Value* v = args.get(i, key);
  if (v == nullptr || v->is_none()) return static_cast<const std::string*>(nullptr);
  if (!v->is_string()) return invalid_argument("argument '{}' must be a string", key);
  return &v->as_string();
}

// str.format with "{}", "{0}" and "{name}" fields and "{{"/"}}" escapes; no format specs.
Result<Value> py_format(const std::string& s, const CallArgs& args, const RenderOptions& limits) {
  std::string out;
  size_t next_auto = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '}') {
      if (i + 1 < s.size() && s[i + 1] == '}')
        ++i;
      else
        return invalid_argument("Single '}}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < s.size() && s[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = s.find('}', i);
    if (close == std::string::npos)
      return invalid_argument("Single '{{' encountered in format string");
    std::string field = s.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos) {
      return invalid_argument("format(): field '{}' is not supported", field);
    }
    const Value* v = nullptr;
    if (field.empty()) {
      v = next_auto < args.args.size() ? &args.args[next_auto++] : nullptr;
    } else if (std::all_of(field.begin(), field.end(), ::isdigit) && field.size() < 6) {
      size_t idx = std::stoul(field);
      v = idx < args.args.size() ? &args.args[idx] : nullptr;
    } else {
      v = args.get(SIZE_MAX, field);
    }
    if (v == nullptr) return invalid_argument("format(): missing argument for '{{{}}}'", field);
    out += v->str();
    if (out.size() > limits.max_output_bytes) return invalid_argument("format(): string too long");
    i = close;
  }
  return Value::string(std::move(out));
}

Result<Value> string_method(const std::string& s, const std::string& name, const CallArgs& args,
                            const RenderOptions& limits) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    FS_ASSIGN_OR_RETURN(const std::string* chars, optional_string(args, 0, "chars"));
    return Value::string(py_strip(s, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split") {
    FS_ASSIGN_OR_RETURN(const std::string* sep, optional_string(args, 0, "sep"));
    if (sep != nullptr && sep->empty()) return invalid_argument("empty separator");
    const Value* maxsplit = args.get(1, "maxsplit");
    std::vector<Value> items;
    for (auto& part : py_split(s, sep, maxsplit ? maxsplit->as_int() : -1)) {
      items.push_back(Value::string(std::move(part)));
    }
    return Value::list(std::move(items));
  }
  if (name == "startswith" || name == "endswith") {
    const Value* arg = args.get(0, "prefix");
    if (arg == nullptr) return invalid_argument("{}() takes one argument", name);
    std::vector<Value> options = arg->is_list() ? arg->items() : std::vector<Value>{*arg};
    for (const Value& o : options) {
      if (!o.is_string()) return invalid_argument("{}() takes a string or tuple", name);
      const std::string& p = o.as_string();
      bool hit = p.size() <= s.size() &&
                 (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                       : s.compare(s.size() - p.size(), p.size(), p) == 0);
      if (hit) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower") return Value::string(py_lower(s));
  if (name == "title") return Value::string(py_title(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "replace") {
    const Value* from = args.get(0, "old");
    const Value* to = args.get(1, "new");
    const Value* count = args.get(2, "count");
    if (from == nullptr || to == nullptr || !from->is_string() || !to->is_string()) {
      return invalid_argument("replace() takes two strings");
    }
    std::string out =
        py_replace(s, from->as_string(), to->as_string(), count ? count->as_int() : -1);
    if (out.size() > limits.max_output_bytes) return invalid_argument("string too long");
    return Value::string(std::move(out));
  }
  if (name == "find" || name == "count") {
    const Value* sub = args.get(0, "sub");
    if (sub == nullptr || !sub->is_string()) return invalid_argument("{}() takes a string", name);
    if (name == "find") {
      size_t at = s.find(sub->as_string());
      return Value::integer(at == std::string::npos ? -1
                                                    : static_cast<int64_t>(utf8_length(
                                                          std::string_view(s).substr(0, at))));
    }
    if (sub->as_string().empty()) return Value::integer(static_cast<int64_t>(utf8_length(s)) + 1);
    int64_t n = 0;
    for (size_t at = s.find(sub->as_string()); at != std::string::npos;
         at = s.find(sub->as_string(), at + sub->as_string().size())) {
      ++n;
    }
    return Value::integer(n);
  }
  if (name == "join") {
    const Value* seq = args.get(0, "iterable");
    if (seq == nullptr) return invalid_argument("join() takes one argument");
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(*seq));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) return invalid_argument("join() expects strings");
      if (i > 0) out += s;
      out += items[i].as_string();
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return py_format(s, args, limits);
  if (name == "isdigit" || name == "isspace" || name == "isalpha") {
    bool ok = !s.empty();
    for (char c : s) {
      ok = ok && (name == "isdigit"   ? (c >= '0' && c <= '9')
                  : name == "isalpha" ? is_alpha(c)
                                      : is_python_space(std::string_view(&c, 1)));
    }
    return Value::boolean(ok);
  }
  return invalid_argument("'str' object has no attribute '{}'", name);
}

}  // namespace

Result<Value> call_method(const Value& obj, const std::string& name, const CallArgs& args,
                          const RenderOptions& limits) {
  if (obj.is_string()) return string_method(obj.as_string(), name, args, limits);
  if (obj.is_dict()) {
    if (name == "items" || name == "keys" || name == "values") {
      std::vector<Value> out;
      for (const auto& [k, v] : obj.dict().items) {
        if (name == "items") {
          out.push_back(Value::list({dict_key_value(k), v}, /*is_tuple=*/true));
        } else {
          out.push_back(name == "keys" ? dict_key_value(k) : v);
        }
      }
      return Value::list(std::move(out));
    }
    if (name == "get") {
      const Value* key = args.get(0, "key");
      const Value* def = args.get(1, "default");
      if (key == nullptr) return invalid_argument("get() takes a key");
      if (std::optional<std::string> k = dict_key(*key)) {
        if (const Value* v = obj.dict().find(*k)) return *v;
      }
      return def != nullptr ? *def : Value::none();
    }
  }
  if (obj.is_none()) return invalid_argument("'NoneType' object has no attribute '{}'", name);
  return invalid_argument("'{}' object has no attribute '{}' (or calling it is not supported)",
                          obj.type_name(), name);
}

}  // namespace fs::jinja
