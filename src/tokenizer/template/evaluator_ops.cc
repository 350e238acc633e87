// Operators: arithmetic, concatenation, comparison, membership, slicing (Python semantics).
#include <cmath>

#include "tokenizer/template/evaluator.h"

namespace fs::jinja {
namespace {

bool both_ints(const Value& a, const Value& b) {
  return (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
}

Result<bool> contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) {
      return invalid_argument("'in <string>' requires string as left operand, not {}",
                              item.type_name());
    }
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Value& v : container.items()) {
      if (values_equal(v, item)) return true;
    }
    return false;
  }
  if (container.is_dict()) {
    std::optional<std::string> key = dict_key(item);
    return key && container.dict().find(*key) != nullptr;
  }
  if (container.is_undefined()) return false;
  return invalid_argument("argument of type '{}' is not iterable", container.type_name());
}

}  // namespace

Result<Value> Evaluator::arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) return invalid_argument("{}", a.as_string());
  if (b.is_undefined()) return invalid_argument("{}", b.as_string());
  auto type_error = [&] {
    return invalid_argument("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(),
                            b.type_name());
  };
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      if (a.as_string().size() + b.as_string().size() > options_.max_output_bytes) {
        return invalid_argument("string longer than {} bytes", options_.max_output_bytes);
      }
      if (a.is_markup() || b.is_markup()) {  // Markup.__add__ / __radd__ escape the plain side
        std::string out = a.is_markup() ? a.as_string() : html_escape(a.as_string());
        out += b.is_markup() ? b.as_string() : html_escape(b.as_string());
        return Value::markup(std::move(out));
      }
      return Value::string(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      if (a.items().size() + b.items().size() > options_.max_list_items) {
        return invalid_argument("list longer than {} items", options_.max_list_items);
      }
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(items), a.is_tuple());
    }
  }
  if (op == "*") {
    const Value* seq = (a.is_string() || a.is_list())   ? &a
                       : (b.is_string() || b.is_list()) ? &b
                                                        : nullptr;
    const Value* count = seq == &a ? &b : &a;
    if (seq != nullptr) {
      if (!count->is_int() && !count->is_bool()) return type_error();
      int64_t n = std::max<int64_t>(0, count->as_int());
      if (seq->is_string()) {
        if (!seq->as_string().empty() &&
            static_cast<uint64_t>(n) > options_.max_output_bytes / seq->as_string().size()) {
          return invalid_argument("string longer than {} bytes", options_.max_output_bytes);
        }
        std::string out;
        for (int64_t i = 0; i < n && !seq->as_string().empty(); ++i) out += seq->as_string();
        return Value::string(std::move(out));
      }
      if (!seq->items().empty() &&
          static_cast<uint64_t>(n) > options_.max_list_items / seq->items().size()) {
        return invalid_argument("list longer than {} items", options_.max_list_items);
      }
      std::vector<Value> items;
      for (int64_t i = 0; i < n && !seq->items().empty(); ++i) {
        items.insert(items.end(), seq->items().begin(), seq->items().end());
      }
      return Value::list(std::move(items), seq->is_tuple());
    }
  }
  if (!a.is_number() || !b.is_number()) return type_error();
  if (both_ints(a, b) && op != "/") {
    int64_t x = a.as_int(), y = b.as_int(), r = 0;
    if (op == "+" && !__builtin_add_overflow(x, y, &r)) return Value::integer(r);
    if (op == "-" && !__builtin_sub_overflow(x, y, &r)) return Value::integer(r);
    if (op == "*" && !__builtin_mul_overflow(x, y, &r)) return Value::integer(r);
    if (op == "//" || op == "%") {
      if (y == 0) return invalid_argument("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) return invalid_argument("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::integer(op == "//" ? q : m);
    }
    if (op == "**") {
      if (y < 0) return Value::floating(std::pow(static_cast<double>(x), static_cast<double>(y)));
      if (x == 0 || x == 1) return Value::integer(y == 0 ? 1 : x);
      if (x == -1) return Value::integer(y % 2 == 0 ? 1 : -1);
      int64_t result = 1;
      for (int64_t i = 0; i < y; ++i) {  // |x| >= 2: overflows within 64 steps
        if (__builtin_mul_overflow(result, x, &result)) return invalid_argument("integer overflow");
      }
      return Value::integer(result);
    }
    return invalid_argument("integer overflow");
  }
  double x = a.as_double(), y = b.as_double();
  if (op == "+") return Value::floating(x + y);
  if (op == "-") return Value::floating(x - y);
  if (op == "*") return Value::floating(x * y);
  if (op == "**") return Value::floating(std::pow(x, y));
  if (y == 0) return invalid_argument("division by zero");
  if (op == "/") return Value::floating(x / y);
  if (op == "//") return Value::floating(std::floor(x / y));
  if (op == "%") {
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value::floating(m);
  }
  return type_error();
}

Result<Value> Evaluator::eval_binary(const Expr& e) {
  FS_ASSIGN_OR_RETURN(Value a, eval(*e.args[0]));
  if (e.name == "and") return a.truthy() ? eval(*e.args[1]) : a;
  if (e.name == "or") return a.truthy() ? a : eval(*e.args[1]);
  FS_ASSIGN_OR_RETURN(Value b, eval(*e.args[1]));
  if (e.name == "~") {
    if (a.str().size() + b.str().size() > options_.max_output_bytes) {
      return error(e.pos, fmt::format("string longer than {} bytes", options_.max_output_bytes));
    }
    return Value::string(a.str() + b.str());
  }
  Result<Value> r = arithmetic(e.name, a, b);
  if (!r.is_ok()) return at(e.pos, r.status());
  return r;
}

Result<Value> Evaluator::eval_compare(const Expr& e) {
  FS_ASSIGN_OR_RETURN(Value left, eval(*e.args[0]));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    FS_ASSIGN_OR_RETURN(Value right, eval(*e.args[i + 1]));
    const std::string& op = e.ops[i];
    Result<bool> r = false;
    if (op == "==") {
      r = values_equal(left, right);
    } else if (op == "!=") {
      r = !values_equal(left, right);
    } else if (op == "in" || op == "not in") {
      r = contains(right, left);
      if (r.is_ok() && op == "not in") r = !*r;
    } else if (op == "<") {
      r = py_less(left, right);
    } else if (op == ">") {
      r = py_less(right, left);
    } else if (op == "<=") {
      r = py_less(right, left);
      if (r.is_ok()) r = !*r;
    } else {  // >=
      r = py_less(left, right);
      if (r.is_ok()) r = !*r;
    }
    if (!r.is_ok()) return at(e.pos, r.status());
    if (!*r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Result<Value> Evaluator::eval_slice(const Expr& e) {
  FS_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
  if (obj.is_undefined()) return error(e.pos, obj.as_string());
  int64_t bounds[3] = {0, 0, 1};
  bool given[3] = {false, false, false};
  for (int k = 0; k < 3; ++k) {
    if (!e.args[k + 1]) continue;
    FS_ASSIGN_OR_RETURN(Value v, eval(*e.args[k + 1]));
    if (v.is_none()) continue;
    if (!v.is_int() && !v.is_bool())
      return error(e.args[k + 1]->pos, "slice indices must be integers");
    bounds[k] = v.as_int();
    given[k] = true;
  }
  int64_t step = bounds[2];
  if (step == 0) return error(e.pos, "slice step cannot be zero");
  std::vector<std::string_view> chars;
  int64_t len = 0;
  if (obj.is_string()) {
    chars = utf8_chars(obj.as_string());
    len = static_cast<int64_t>(chars.size());
  } else if (obj.is_list()) {
    len = static_cast<int64_t>(obj.items().size());
  } else {
    return error(e.pos, fmt::format("'{}' object is not subscriptable", obj.type_name()));
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](int64_t v, bool is_given, int64_t def) {
    if (!is_given) return def;
    if (v < 0) {
      v += len;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= len) {
      v = step < 0 ? len - 1 : len;
    }
    return v;
  };
  int64_t start = adjust(bounds[0], given[0], step < 0 ? len - 1 : 0);
  int64_t stop = adjust(bounds[1], given[1], step < 0 ? -1 : len);
  std::vector<Value> items;
  std::string s;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (obj.is_string()) {
      s += chars[static_cast<size_t>(i)];
    } else {
      items.push_back(obj.items()[static_cast<size_t>(i)]);
    }
  }
  if (obj.is_string()) return Value::string(std::move(s));
  return Value::list(std::move(items), obj.is_tuple());
}

}  // namespace fs::jinja
