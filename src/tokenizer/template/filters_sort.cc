// Ordering and aggregation filters: sort, dictsort, min, max, sum (jinja2 semantics: strings
// compare case-insensitively unless case_sensitive=true).
#include <algorithm>

#include "tokenizer/template/builtins.h"

namespace fs::jinja {
namespace {

Value attribute_of(const Value& item, const Value* attribute) {
  if (attribute == nullptr || attribute->is_none()) return item;
  return py_getitem(item, attribute->is_int() ? *attribute : Value::string(attribute->str()));
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(py_lower(v.as_string()));
  return v;
}

// Stable sort with Python's `<`; the first failed comparison is returned as the error.
Status sort_values(std::vector<std::pair<Value, Value>>& keyed, bool reverse) {
  Status failure;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (!failure.is_ok()) return false;
    Result<bool> r = reverse ? py_less(b.first, a.first) : py_less(a.first, b.first);
    if (!r.is_ok()) {
      failure = r.status();
      return false;
    }
    return *r;
  });
  return failure;
}

}  // namespace

Result<Value> apply_sort_filter(const std::string& name, const Value& input, const CallArgs& args) {
  if (name == "dictsort") {
    if (!input.is_mapping()) return invalid_argument("dictsort: expected a mapping");
    const Value* cs = args.get(0, "case_sensitive");
    const Value* by = args.get(1, "by");
    const Value* reverse = args.get(2, "reverse");
    bool by_value = by != nullptr && by->str() == "value";
    if (by != nullptr && !by_value && by->str() != "key") {
      return invalid_argument("dictsort: 'by' must be 'key' or 'value'");
    }
    std::vector<std::pair<Value, Value>> keyed;
    for (const auto& [k, v] : input.dict().items) {
      Value pair = Value::list({dict_key_value(k), v}, /*is_tuple=*/true);
      keyed.emplace_back(sort_key(by_value ? v : dict_key_value(k), cs && cs->truthy()), pair);
    }
    FS_RETURN_IF_ERROR(sort_values(keyed, reverse && reverse->truthy()));
    std::vector<Value> out;
    for (auto& [_, pair] : keyed) out.push_back(std::move(pair));
    return Value::list(std::move(out));
  }
  FS_ASSIGN_OR_RETURN(std::vector<Value> items, py_iterate(input));
  if (name == "sum") {
    const Value* attribute = args.get(0, "attribute");
    const Value* start = args.get(1, "start");
    Value total = start != nullptr ? *start : Value::integer(0);
    for (const Value& item : items) {
      Value v = attribute_of(item, attribute);
      if (!total.is_number() || !v.is_number()) {
        return invalid_argument("sum: unsupported operand types '{}' and '{}'", total.type_name(),
                                v.type_name());
      }
      int64_t r = 0;
      if (total.is_float() || v.is_float() ||
          __builtin_add_overflow(total.as_int(), v.as_int(), &r)) {
        total = Value::floating(total.as_double() + v.as_double());
      } else {
        total = Value::integer(r);
      }
    }
    return total;
  }
  bool is_sort = name == "sort";
  const Value* reverse = is_sort ? args.get(0, "reverse") : nullptr;
  const Value* cs = args.get(is_sort ? 1 : 0, "case_sensitive");
  const Value* attribute = args.get(is_sort ? 2 : 1, "attribute");
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    keyed.emplace_back(sort_key(attribute_of(item, attribute), cs && cs->truthy()), item);
  }
  FS_RETURN_IF_ERROR(sort_values(keyed, (reverse && reverse->truthy()) || name == "max"));
  if (is_sort) {
    std::vector<Value> out;
    for (auto& [_, item] : keyed) out.push_back(std::move(item));
    return Value::list(std::move(out));
  }
  if (keyed.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  return keyed.front().second;  // min: smallest first; max: sorted descending
}

}  // namespace fs::jinja
