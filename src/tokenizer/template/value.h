// The value type templates compute with: Python's object model as far as chat templates need it
// (None, bool, int, float, str, list/tuple, dict in insertion order, jinja2's Undefined, namespace
// objects and callables). Strings hold UTF-8; lengths and indices count code points, as in Python.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace fs::jinja {

class Value;
struct Stmt;

// Containers nest at most this deep (JSON input and values built by a template), so recursive
// printing, comparison and destruction stay within the stack.
inline constexpr int kMaxValueDepth = 256;

struct ValueList {
  std::vector<Value> items;
  bool is_tuple = false;  // prints as (a, b) instead of [a, b]
};

// A dict or namespace: keys in insertion order (Python 3.7+ dicts), linear lookup (chat-template
// dicts are small).
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  void set(std::string key, Value value);
};

// A macro defined by the template or a global function such as range() or raise_exception().
struct Callable {
  std::string name;
  const Stmt* macro = nullptr;  // null for built-in globals
};

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  Value() = default;  // undefined
  static Value undefined(std::string name = "");
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double d);
  static Value string(std::string s);
  // markupsafe.Markup: a string marked safe by `safe`/`escape`; `+` HTML-escapes a plain operand.
  static Value markup(std::string s);
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value dict(ValueDict d);
  static Value make_namespace(ValueDict d);
  static Value callable(Callable c);
  // Fails for JSON nested deeper than kMaxValueDepth. Dicts take the JSON object's key order:
  // sorted for nlohmann::json, as written for nlohmann::ordered_json.
  static Result<Value> from_json(const nlohmann::json& j);
  static Result<Value> from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_markup() const { return kind_ == Kind::kString && b_; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_mapping() const { return is_dict() || is_namespace(); }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return is_bool() ? (b_ ? 1 : 0) : i_; }  // int or bool
  double as_double() const;                                         // any number
  const std::string& as_string() const { return s_; }               // string; undefined name
  const std::vector<Value>& items() const { return list_->items; }
  bool is_tuple() const { return list_->is_tuple; }
  const ValueDict& dict() const { return *dict_; }
  ValueDict& mutable_namespace() const { return *dict_; }
  const Callable& callable_value() const { return *fn_; }
  // Container nesting: 0 for scalars, 1 + the deepest element for lists, dicts and namespaces
  // (as created; later `set ns.x = ...` does not update it).
  int depth() const { return depth_; }
  // Empties a namespace, breaking reference cycles (`set ns.self = ns`) when a render ends.
  void clear_namespace() const {
    if (is_namespace()) dict_->items.clear();
  }

  // Python truthiness.
  bool truthy() const;
  // Python str(): what {{ value }} prints. Undefined prints "".
  std::string str() const;
  // Python repr(), used inside containers.
  std::string repr() const;
  // Python type name for error messages ("str", "dict", "NoneType", "undefined").
  const char* type_name() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<Callable> fn_;
  int depth_ = 0;
};

// Dict keys are stored as strings; int keys (allowed in dict literals) are encoded with a \x01
// prefix. dict_key() fails (nullopt) for key types other than str, int and bool.
std::optional<std::string> dict_key(const Value& key);
Value dict_key_value(const std::string& key);

// markupsafe.escape: & < > " ' as HTML entities.
std::string html_escape(const std::string& s);

// Python ==: 1 == 1.0 == True, deep on containers; undefined equals undefined.
bool values_equal(const Value& a, const Value& b);
// Python repr(float): shortest round-trip digits, "1.0", "1e-05", "1e+20", "inf", "nan".
std::string python_float_repr(double d);

// Code points of a UTF-8 string (invalid bytes count as one code point each).
std::vector<std::string_view> utf8_chars(std::string_view s);
size_t utf8_length(std::string_view s);
// Python str.isspace() for one UTF-8 encoded code point.
bool is_python_space(std::string_view ch);

// json.dumps(value, ensure_ascii=False, indent=indent, separators=..., sort_keys=sort_keys), as
// transformers' tojson filter calls it. indent < 0 means None. ensure_ascii escapes non-ASCII
// code points as \uXXXX (surrogate pairs above U+FFFF).
Result<std::string> to_json(const Value& v, int indent, const std::string& item_sep,
                            const std::string& key_sep, bool sort_keys, bool ensure_ascii = false);

}  // namespace fs::jinja
