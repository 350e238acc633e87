// Filters, tests, methods of str/dict/list and the Python string helpers they share. Errors carry
// no position; the evaluator adds the line:column of the call.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "tokenizer/template/value.h"

namespace fs::jinja {

// Limits that keep a hostile template from exhausting time or memory, and the clock.
struct RenderOptions {
  size_t max_output_bytes = size_t{16} << 20;  // rendered text, and any single string value
  size_t max_list_items = size_t{1} << 16;     // any list value (range(), list + list, ...)
  int64_t max_loop_iterations = 1'000'000;     // summed over all for-loops of one render
  int max_call_depth = 32;                     // nested macro calls
  int64_t now_unix_s = -1;  // strftime_now()'s time (local time zone); < 0: the current time
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  // The argument at position `index`, or the keyword `key`; null when absent.
  const Value* get(size_t index, std::string_view key) const;
};

// `input | name(args)`.
Result<Value> apply_filter(const std::string& name, const Value& input, const CallArgs& args,
                           const RenderOptions& limits);
// sort, dictsort, min, max, sum.
Result<Value> apply_sort_filter(const std::string& name, const Value& input, const CallArgs& args);
// `input is name(args)`.
Result<bool> apply_test(const std::string& name, const Value& input, const CallArgs& args);
// `obj.name(args)` for the str and dict methods chat templates call.
Result<Value> call_method(const Value& obj, const std::string& name, const CallArgs& args,
                          const RenderOptions& limits);

// Python str.strip/lstrip/rstrip: with chars == nullptr strips Unicode whitespace.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
// Python str.split(sep, maxsplit); sep == nullptr splits on runs of whitespace.
std::vector<std::string> py_split(const std::string& s, const std::string* sep, int64_t maxsplit);
// Python str.replace(old, new, count); count < 0 replaces all.
std::string py_replace(const std::string& s, const std::string& from, const std::string& to,
                       int64_t count);
std::string py_upper(std::string s);
std::string py_lower(std::string s);
std::string py_title(const std::string& s);
std::string py_capitalize(const std::string& s);
// Python `<` on numbers, strings and lists; error for other types.
Result<bool> py_less(const Value& a, const Value& b);
// Iterating a value in a for loop or a filter: lists, dict keys, string characters; undefined is
// empty.
Result<std::vector<Value>> py_iterate(const Value& v);
// Python len(); error for types without one.
Result<int64_t> py_len(const Value& v);
// Attribute lookup as jinja2's getattr: dict keys, else undefined with a message.
Value py_getattr(const Value& obj, const std::string& name);
// Subscription obj[key] as jinja2's getitem: dict keys, list/str indices (negative allowed).
Value py_getitem(const Value& obj, const Value& key);

}  // namespace fs::jinja
