// jinja2's built-in filters and tests that chat templates use, plus transformers' tojson.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "tokenizer/template/builtins.h"

namespace fs::jinja {
namespace {

// Attribute path "a.b" or index "0" as jinja2's make_attrgetter resolves it.
Value get_attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    if (numeric && part.size() < 10) {
      cur = py_getitem(cur, Value::integer(std::atoll(part.c_str())));
    } else {
      cur = py_getitem(cur, Value::string(part));
    }
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Result<Value> filter_tojson(const Value& input, const CallArgs& args) {
  int indent = -1;
  std::string item_sep = ", ", key_sep = ": ";
  if (const Value* v = args.get(1, "indent"); v != nullptr && !v->is_none()) {
    if (!v->is_int()) return invalid_argument("tojson: indent must be an integer");
    indent = static_cast<int>(std::clamp<int64_t>(v->as_int(), 0, 64));
    item_sep.erase(1);  // ", " -> ","
  }
  if (const Value* v = args.get(2, "separators"); v != nullptr && !v->is_none()) {
    if (!v->is_list() || v->items().size() != 2 || !v->items()[0].is_string() ||
        !v->items()[1].is_string()) {
      return invalid_argument("tojson: separators must be a pair of strings");
    }
    item_sep = v->items()[0].as_string();
    key_sep = v->items()[1].as_string();
  }
  const Value* ascii = args.get(0, "ensure_ascii");
  const Value* sort = args.get(3, "sort_keys");
  FS_ASSIGN_OR_RETURN(std::string s,
                      to_json(input, indent, item_sep, key_sep, sort != nullptr && sort->truthy(),
                              ascii != nullptr && ascii->truthy()));
  return Value::string(std::move(s));
}

std::string jinja_title(const std::string& s) {
  // jinja2 do_title: words split at runs of "-", whitespace, "(", "{", "[", "<".
  std::string out;
  bool word_start = true;
  for (char c : s) {
    bool sep = c == '-' || c == ' ' || (c >= '\t' && c <= '\r') || c == '(' || c == '{' ||
               c == '[' || c == '<';
    if (sep) {
      out += c;
      word_start = true;
    } else {
      out += word_start ? py_upper(std::string(1, c)) : py_lower(std::string(1, c));
      word_start = false;
    }
  }
  return out;
}

std::string indent_text(const std::string& s, const std::string& pad, bool first, bool blank) {
  std::string text = s + "\n";
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' || text[i] == '\r') {
      lines.push_back(text.substr(start, i - start));
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  std::string rv;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) rv += "\n";
    bool pad_line = i > 0 && (blank || !lines[i].empty());
    if (pad_line) rv += pad;
    rv += lines[i];
  }
  if (!first) return rv;
  std::string padded = pad;
  padded += rv;
  return padded;
}

Result<Value> select_items(const std::string& name, const Value& input, const CallArgs& args) {
  if (!input.truthy()) return Value::list({});  // jinja2: `if seq:` guards the loop
  FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
  bool by_attr = name == "selectattr" || name == "rejectattr";
  bool keep_if = name == "select" || name == "selectattr";
  size_t first_test_arg = by_attr ? 1 : 0;
  std::string attr;
  if (by_attr) {
    if (args.args.empty() || !args.args[0].is_string()) {
      return invalid_argument("{}: missing attribute name", name);
    }
    attr = args.args[0].as_string();
  }
  std::string test;
  CallArgs test_args;
  if (args.args.size() > first_test_arg) {
    if (!args.args[first_test_arg].is_string()) return invalid_argument("{}: bad test name", name);
    test = args.args[first_test_arg].as_string();
    test_args.args.assign(args.args.begin() + first_test_arg + 1, args.args.end());
  }
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = by_attr ? get_attribute_path(item, attr) : item;
    bool pass = subject.truthy();
    if (!test.empty()) {
      FS_ASSIGN_OR_RETURN(pass, apply_test(test, subject, test_args));
    }
    if (pass == keep_if) out.push_back(item);
  }
  return Value::list(std::move(out));
}

}  // namespace

Result<Value> apply_filter(const std::string& name, const Value& input, const CallArgs& args,
                           const RenderOptions& limits) {
  if (name == "tojson") return filter_tojson(input, args);
  if (name == "sort" || name == "dictsort" || name == "min" || name == "max" || name == "sum") {
    return apply_sort_filter(name, input, args);
  }
  if (name == "default" || name == "d") {
    const Value* def = args.get(0, "default_value");
    const Value* boolean = args.get(1, "boolean");
    bool use_default =
        input.is_undefined() || (boolean != nullptr && boolean->truthy() && !input.truthy());
    if (use_default) return def != nullptr ? *def : Value::string("");
    return input;
  }
  if (name == "length" || name == "count") {
    FS_ASSIGN_OR_RETURN(int64_t n, py_len(input));
    return Value::integer(n);
  }
  if (name == "string") return input.is_string() ? input : Value::string(input.str());
  if (name == "safe") return input.is_markup() ? input : Value::markup(input.str());
  if (name == "escape" || name == "e" || name == "forceescape") {
    if (input.is_markup() && name != "forceescape") return input;
    return Value::markup(html_escape(input.str()));
  }
  if (name == "list") {
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
    return Value::list(std::move(items));
  }
  if (name == "items") {
    if (input.is_undefined()) return Value::list({});
    if (!input.is_mapping()) return invalid_argument("items: expected a mapping");
    return call_method(Value::dict(input.dict()), "items", {}, limits);
  }
  if (name == "first" || name == "last") {
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
    if (items.empty()) return Value::undefined("no first or last item of an empty sequence");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (input.is_string()) {
      auto cs = utf8_chars(input.as_string());
      std::string out;
      for (auto it = cs.rbegin(); it != cs.rend(); ++it) out += *it;
      return Value::string(std::move(out));
    }
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "join") {
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
    const Value* sep = args.get(0, "d");
    const Value* attr = args.get(1, "attribute");
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0 && sep != nullptr) out += sep->str();
      out += (attr != nullptr ? get_attribute_path(items[i], attr->str()) : items[i]).str();
      if (out.size() > limits.max_output_bytes) return invalid_argument("join: string too long");
    }
    return Value::string(std::move(out));
  }
  if (name == "map") {
    if (!input.truthy()) return Value::list({});  // jinja2: `if seq:` guards the loop
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
    const Value* attr = args.get(99, "attribute");
    std::vector<Value> out;
    if (attr != nullptr) {
      const Value* def = args.get(99, "default");
      for (const Value& item : items) {
        Value v = get_attribute_path(item, attr->str());
        out.push_back(v.is_undefined() && def != nullptr ? *def : v);
      }
    } else {
      if (args.args.empty() || !args.args[0].is_string()) return invalid_argument("map: no filter");
      CallArgs rest;
      rest.args.assign(args.args.begin() + 1, args.args.end());
      rest.kwargs = args.kwargs;
      for (const Value& item : items) {
        FS_ASSIGN_OR_RETURN(Value v, apply_filter(args.args[0].as_string(), item, rest, limits));
        out.push_back(std::move(v));
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return select_items(name, input, args);
  }
  if (name == "unique") {
    FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
    std::vector<Value> out;
    for (const Value& v : items) {
      bool seen = false;
      for (const Value& o : out) seen = seen || values_equal(o, v);
      if (!seen) out.push_back(v);
    }
    return Value::list(std::move(out));
  }
  if (name == "int") {
    const Value* def = args.get(0, "default");
    Value fallback = def != nullptr ? *def : Value::integer(0);
    if (input.is_int() || input.is_bool()) return Value::integer(input.as_int());
    if (input.is_float()) {
      double d = input.as_double();
      if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return fallback;
      return Value::integer(static_cast<int64_t>(d));
    }
    if (input.is_string()) {
      std::string s = py_strip(input.as_string(), nullptr, true, true);
      char* end = nullptr;
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::integer(v);
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) {
        return Value::integer(static_cast<int64_t>(d));
      }
    }
    return fallback;
  }
  if (name == "float") {
    const Value* def = args.get(0, "default");
    if (input.is_number()) return Value::floating(input.as_double());
    if (input.is_string()) {
      std::string s = py_strip(input.as_string(), nullptr, true, true);
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size()) return Value::floating(d);
    }
    return def != nullptr ? *def : Value::floating(0.0);
  }
  if (name == "abs") {
    if (input.is_float()) return Value::floating(std::fabs(input.as_double()));
    if (input.is_number() && input.as_int() != INT64_MIN)
      return Value::integer(std::llabs(input.as_int()));
    return invalid_argument("bad operand type for abs(): '{}'", input.type_name());
  }
  if (input.is_undefined() &&
      (name == "trim" || name == "upper" || name == "lower" || name == "title" ||
       name == "capitalize" || name == "indent" || name == "replace")) {
    return Value::string("");
  }
  // String filters: jinja2 applies them to str(value).
  std::string s = input.str();
  if (name == "trim") {
    const Value* chars = args.get(0, "chars");
    const std::string* c = (chars != nullptr && chars->is_string()) ? &chars->as_string() : nullptr;
    return Value::string(py_strip(s, c, true, true));
  }
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower") return Value::string(py_lower(s));
  if (name == "title") return Value::string(jinja_title(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "replace") {
    const Value* from = args.get(0, "old");
    const Value* to = args.get(1, "new");
    const Value* count = args.get(2, "count");
    if (from == nullptr || to == nullptr) return invalid_argument("replace: needs old and new");
    std::string out = py_replace(s, from->str(), to->str(), count ? count->as_int() : -1);
    if (out.size() > limits.max_output_bytes) return invalid_argument("replace: string too long");
    return Value::string(std::move(out));
  }
  if (name == "indent") {
    const Value* width = args.get(0, "width");
    const Value* first = args.get(1, "first");
    const Value* blank = args.get(2, "blank");
    std::string pad = "    ";
    if (width != nullptr && width->is_string()) {
      pad = width->as_string();
    } else if (width != nullptr) {
      pad = std::string(static_cast<size_t>(std::clamp<int64_t>(width->as_int(), 0, 256)), ' ');
    }
    std::string out = indent_text(s, pad, first && first->truthy(), blank && blank->truthy());
    if (out.size() > limits.max_output_bytes) return invalid_argument("indent: string too long");
    return Value::string(std::move(out));
  }
  return invalid_argument("unknown filter '{}'", name);
}

Result<bool> apply_test(const std::string& name, const Value& v, const CallArgs& args) {
  const Value* arg = args.get(0, "other");
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "lower") return v.is_string() && py_lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && py_upper(v.as_string()) == v.as_string();
  if (name == "odd" || name == "even") {
    if (!v.is_int() && !v.is_bool()) return invalid_argument("test '{}' needs an integer", name);
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (arg == nullptr) {
    static constexpr const char* kBinary[] = {"equalto", "eq", "==", "ne",         "!=", "sameas",
                                              "in",      "lt", "<",  "le",         "<=", "gt",
                                              ">",       "ge", ">=", "divisibleby"};
    for (const char* b : kBinary) {
      if (name == b) return invalid_argument("test '{}' needs an argument", name);
    }
    return invalid_argument("unknown test '{}'", name);
  }
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") {
    return values_equal(v, *arg);
  }
  if (name == "ne" || name == "!=") return !values_equal(v, *arg);
  if (name == "lt" || name == "<") return py_less(v, *arg);
  if (name == "gt" || name == ">") return py_less(*arg, v);
  if (name == "le" || name == "<=") {
    FS_ASSIGN_OR_RETURN(bool gt, py_less(*arg, v));
    return !gt;
  }
  if (name == "ge" || name == ">=") {
    FS_ASSIGN_OR_RETURN(bool lt, py_less(v, *arg));
    return !lt;
  }
  if (name == "divisibleby") {
    if (!arg->is_int() || arg->as_int() == 0 || !v.is_int()) {
      return invalid_argument("divisibleby needs non-zero integers");
    }
    if (arg->as_int() == -1) return true;
    return v.as_int() % arg->as_int() == 0;
  }
  if (name == "in") {
    if (arg->is_string())
      return v.is_string() && arg->as_string().find(v.as_string()) != std::string::npos;
    if (arg->is_list()) {
      for (const Value& x : arg->items()) {
        if (values_equal(x, v)) return true;
      }
      return false;
    }
    if (arg->is_mapping()) {
      std::optional<std::string> key = dict_key(v);
      return key && arg->dict().find(*key) != nullptr;
    }
    return invalid_argument("test 'in' needs a container");
  }
  return invalid_argument("unknown test '{}'", name);
}

}  // namespace fs::jinja
