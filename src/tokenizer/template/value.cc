#include "tokenizer/template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace fs::jinja {

const Value* ValueDict::find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ValueDict::set(std::string key, Value value) {
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

std::optional<std::string> dict_key(const Value& key) {
  if (key.is_string()) return key.as_string();
  if (key.is_int() || key.is_bool()) {
    std::string encoded(1, '\x01');
    encoded += std::to_string(key.as_int());
    return encoded;
  }
  return std::nullopt;
}

Value dict_key_value(const std::string& key) {
  if (!key.empty() && key[0] == '\x01') return Value::integer(std::atoll(key.c_str() + 1));
  return Value::string(key);
}

Value Value::undefined(std::string name) {
  Value v;
  v.s_ = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::floating(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.d_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.s_ = std::move(s);
  return v;
}
Value Value::markup(std::string s) {
  Value v = string(std::move(s));
  v.b_ = true;
  return v;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
  Value v;
  v.kind_ = Kind::kList;
  for (const Value& item : items) v.depth_ = std::max(v.depth_, item.depth_ + 1);
  if (v.depth_ == 0) v.depth_ = 1;
  v.list_ = std::make_shared<ValueList>(ValueList{std::move(items), is_tuple});
  return v;
}
Value Value::dict(ValueDict d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.depth_ = 1;
  for (const auto& [_, item] : d.items) v.depth_ = std::max(v.depth_, item.depth_ + 1);
  v.dict_ = std::make_shared<ValueDict>(std::move(d));
  return v;
}
Value Value::make_namespace(ValueDict d) {
  Value v = dict(std::move(d));
  v.kind_ = Kind::kNamespace;
  return v;
}
Value Value::callable(Callable c) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::make_shared<Callable>(std::move(c));
  return v;
}

namespace {

template <typename Json>
Result<Value> from_json_at(const Json& j, int depth) {
  if (depth > kMaxValueDepth) {
    return invalid_argument("chat template context nested deeper than {}", kMaxValueDepth);
  }
  switch (j.type()) {
    case nlohmann::detail::value_t::null:
    case nlohmann::detail::value_t::discarded:
      return Value::none();
    case nlohmann::detail::value_t::boolean:
      return Value::boolean(j.template get<bool>());
    case nlohmann::detail::value_t::number_integer:
      return Value::integer(j.template get<int64_t>());
    case nlohmann::detail::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::detail::value_t::number_float:
      return Value::floating(j.template get<double>());
    case nlohmann::detail::value_t::string:
      return Value::string(j.template get<std::string>());
    case nlohmann::detail::value_t::binary:
      return Value::none();
    case nlohmann::detail::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) {
        FS_ASSIGN_OR_RETURN(Value item, from_json_at(e, depth + 1));
        items.push_back(std::move(item));
      }
      return Value::list(std::move(items));
    }
    case nlohmann::detail::value_t::object: {
      ValueDict d;
      d.items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        FS_ASSIGN_OR_RETURN(Value item, from_json_at(*it, depth + 1));
        d.items.emplace_back(it.key(), std::move(item));
      }
      return Value::dict(std::move(d));
    }
  }
  return Value::none();
}

}  // namespace

Result<Value> Value::from_json(const nlohmann::json& j) { return from_json_at(j, 0); }
Result<Value> Value::from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

double Value::as_double() const {
  if (is_float()) return d_;
  return static_cast<double>(as_int());
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return d_ != 0.0;
    case Kind::kString:
      return !s_.empty();
    case Kind::kList:
      return !list_->items.empty();
    case Kind::kDict:
      return !dict_->items.empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return list_->is_tuple ? "tuple" : "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return "function";
  }
  return "object";
}

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-1.2345e-05"
  std::string sign;
  if (!sci.empty() && sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  int exp10 = std::atoi(sci.c_str() + e_pos + 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (exp10 >= -4 && exp10 < 16) {
    std::string out;
    if (exp10 >= 0) {
      std::string int_part = digits.substr(0, std::min(digits.size(), size_t(exp10 + 1)));
      while (int_part.size() < size_t(exp10 + 1)) int_part += '0';
      std::string frac = digits.size() > size_t(exp10 + 1) ? digits.substr(exp10 + 1) : "0";
      out = int_part;
      out += '.';
      out += frac;
    } else {
      out = "0.";
      out.append(static_cast<size_t>(-exp10 - 1), '0');
      out += digits;
    }
    sign += out;
    return sign;
  }
  std::string out = digits.substr(0, 1);
  if (digits.size() > 1) {
    out += '.';
    out.append(digits, 1, std::string::npos);
  }
  return fmt::format("{}{}e{}{:02d}", sign, out, exp10 < 0 ? '-' : '+', std::abs(exp10));
}

namespace {

std::string repr_string(const std::string& s) {
  char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (std::string_view ch : utf8_chars(s)) {
    unsigned char c = static_cast<unsigned char>(ch[0]);
    if (ch.size() == 1) {
      if (c == '\\') {
        out += "\\\\";
      } else if (c == static_cast<unsigned char>(quote)) {
        out += '\\';
        out += quote;
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c >= 0x7f) {
        out += fmt::format("\\x{:02x}", c);
      } else {
        out += static_cast<char>(c);
      }
    } else if (ch.size() == 2 && c == 0xc2 && static_cast<unsigned char>(ch[1]) <= 0xa0) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(ch[1]));  // U+0080..U+00A0
    } else {
      out += ch;
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return s_;
    case Kind::kNone:
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace:
    case Kind::kCallable:
      return repr();
  }
  return "";
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return b_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kFloat:
      return python_float_repr(d_);
    case Kind::kString:
      return repr_string(s_);
    case Kind::kList: {
      std::string out = list_->is_tuple ? "(" : "[";
      for (size_t i = 0; i < list_->items.size(); ++i) {
        if (i > 0) out += ", ";
        out += list_->items[i].repr();
      }
      if (list_->is_tuple && list_->items.size() == 1) out += ",";
      out += list_->is_tuple ? ")" : "]";
      return out;
    }
    case Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : dict_->items) {
        if (!first) out += ", ";
        first = false;
        out += dict_key_value(k).repr();
        out += ": ";
        out += v.repr();
      }
      return out + "}";
    }
    case Kind::kNamespace:
      return "<Namespace>";
    case Kind::kCallable:
      return fmt::format("<function {}>", fn_->name);
  }
  return "";
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      if (a.items().size() != b.items().size() || a.is_tuple() != b.is_tuple()) return false;
      for (size_t i = 0; i < a.items().size(); ++i) {
        if (!values_equal(a.items()[i], b.items()[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().items.size() != b.dict().items.size()) return false;
      for (const auto& [k, v] : a.dict().items) {
        const Value* other = b.dict().find(k);
        if (other == nullptr || !values_equal(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace:
      return &a.dict() == &b.dict();
    case Value::Kind::kCallable:
      return &a.callable_value() == &b.callable_value();
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      return false;  // handled above
  }
  return false;
}

}  // namespace fs::jinja
