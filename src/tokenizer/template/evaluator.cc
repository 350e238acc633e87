#include "tokenizer/template/evaluator.h"

#include <cmath>
#include <ctime>

namespace fs::jinja {

Evaluator::Evaluator(const Value& globals, const RenderOptions& options) : options_(options) {
  frames_.emplace_back();
  if (globals.is_mapping()) {
    for (const auto& [k, v] : globals.dict().items) frames_[0][k] = v;
  }
}

Evaluator::~Evaluator() {
  for (const Value& ns : namespaces_) ns.clear_namespace();
}

Result<std::string> Evaluator::render(const Body& body) {
  std::string out;
  FS_RETURN_IF_ERROR(exec_body(body, out));
  return out;
}

Status Evaluator::error(SourcePos pos, const std::string& message) const {
  return invalid_argument("template error at {}:{}: {}", pos.line, pos.column, message);
}

Status Evaluator::at(SourcePos pos, const Status& s) const {
  if (s.is_ok() || s.message().rfind("template error at ", 0) == 0) return s;
  return Status(s.code(),
                fmt::format("template error at {}:{}: {}", pos.line, pos.column, s.message()));
}

const Value* Evaluator::lookup(const std::string& name) const {
  for (size_t i = frames_.size(); i-- > scope_floor_;) {
    auto it = frames_[i].find(name);
    if (it != frames_[i].end()) return &it->second;
  }
  auto it = frames_[0].find(name);
  return it == frames_[0].end() ? nullptr : &it->second;
}

Status Evaluator::append(std::string& out, const std::string& text, SourcePos pos) {
  output_bytes_ += text.size();
  if (output_bytes_ > options_.max_output_bytes) {
    return error(pos, fmt::format("output exceeds {} bytes", options_.max_output_bytes));
  }
  out += text;
  return Status::ok();
}

Status Evaluator::exec_body(const Body& body, std::string& out) {
  for (const auto& s : body) {
    FS_RETURN_IF_ERROR(exec(*s, out));
    if (flow_ != Flow::kNormal) return Status::ok();
  }
  return Status::ok();
}

Status Evaluator::exec(const Stmt& s, std::string& out) {
  switch (s.kind) {
    case Stmt::Kind::kText:
      return append(out, s.text, s.pos);
    case Stmt::Kind::kOutput: {
      FS_ASSIGN_OR_RETURN(Value v, eval(*s.expr));
      if (v.is_callable()) return error(s.pos, "cannot print a function");
      return append(out, v.str(), s.pos);
    }
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : s.branches) {
        FS_ASSIGN_OR_RETURN(Value c, eval(*cond));
        if (c.truthy()) return exec_body(body, out);
      }
      return exec_body(s.else_body, out);
    case Stmt::Kind::kFor:
      return exec_for(s, out);
    case Stmt::Kind::kSet:
      if (!s.expr) {
        std::string captured;
        FS_RETURN_IF_ERROR(exec_body(s.body, captured));
        frames_.back()[s.targets[0]] = Value::string(std::move(captured));
        return Status::ok();
      }
      return exec_set(s);
    case Stmt::Kind::kMacro:
      frames_.back()[s.text] = Value::callable(Callable{s.text, &s});
      return Status::ok();
    case Stmt::Kind::kCallBlock: {
      const Expr& call = *s.expr;
      FS_ASSIGN_OR_RETURN(Value callee, eval(*call.args[0]));
      if (!callee.is_callable() || callee.callable_value().macro == nullptr) {
        return error(s.pos, "{% call %} needs a macro");
      }
      FS_ASSIGN_OR_RETURN(CallArgs args, eval_args(call, 1));
      FS_ASSIGN_OR_RETURN(Value v, call_macro(*callee.callable_value().macro, args, &s, s.pos));
      return append(out, v.str(), s.pos);
    }
    case Stmt::Kind::kFilterBlock: {
      std::string captured;
      FS_RETURN_IF_ERROR(exec_body(s.body, captured));
      Value input = Value::string(std::move(captured));
      FS_ASSIGN_OR_RETURN(Value v, eval_filter_chain(*s.expr, &input));
      return append(out, v.str(), s.pos);
    }
    case Stmt::Kind::kBreak:
      flow_ = Flow::kBreak;
      return Status::ok();
    case Stmt::Kind::kContinue:
      flow_ = Flow::kContinue;
      return Status::ok();
    case Stmt::Kind::kGeneration:
      return exec_body(s.body, out);
  }
  return Status::ok();
}

Status Evaluator::bind_targets(const std::vector<std::string>& targets, const Value& v,
                               Frame& frame, SourcePos pos) {
  if (targets.size() == 1) {
    frame[targets[0]] = v;
    return Status::ok();
  }
  auto items = py_iterate(v);
  if (!items.is_ok() || v.is_undefined()) return error(pos, "cannot unpack a non-sequence");
  if (items->size() != targets.size()) {
    return error(
        pos, fmt::format("cannot unpack {} values into {} names", items->size(), targets.size()));
  }
  for (size_t i = 0; i < targets.size(); ++i) frame[targets[i]] = (*items)[i];
  return Status::ok();
}

Status Evaluator::exec_set(const Stmt& s) {
  FS_ASSIGN_OR_RETURN(Value v, eval(*s.expr));
  if (!s.ns_attr.empty()) {
    const Value* ns = lookup(s.targets[0]);
    if (ns == nullptr || !ns->is_namespace()) {
      return error(
          s.pos, fmt::format("cannot assign attribute on non-namespace object '{}'", s.targets[0]));
    }
    ns->mutable_namespace().set(s.ns_attr, std::move(v));
    return Status::ok();
  }
  return bind_targets(s.targets, v, frames_.back(), s.pos);
}

Status Evaluator::exec_for(const Stmt& s, std::string& out) {
  FS_ASSIGN_OR_RETURN(Value iterable, eval(*s.expr));
  auto all = py_iterate(iterable);
  if (!all.is_ok()) return at(s.expr->pos, all.status());
  std::vector<Value> items;
  if (s.cond) {
    for (const Value& item : *all) {
      frames_.emplace_back();
      Status st = bind_targets(s.targets, item, frames_.back(), s.pos);
      Result<Value> keep = st.is_ok() ? eval(*s.cond) : Result<Value>(st);
      frames_.pop_back();
      if (!keep.is_ok()) return keep.status();
      if (keep->truthy()) items.push_back(item);
    }
  } else {
    items = std::move(*all);
  }
  if (items.empty()) return exec_body(s.else_body, out);
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    if (++num_iterations_ > options_.max_loop_iterations) {
      return error(s.pos,
                   fmt::format("more than {} loop iterations", options_.max_loop_iterations));
    }
    ValueDict loop;
    loop.items = {
        {"index", Value::integer(i + 1)},
        {"index0", Value::integer(i)},
        {"revindex", Value::integer(n - i)},
        {"revindex0", Value::integer(n - i - 1)},
        {"first", Value::boolean(i == 0)},
        {"last", Value::boolean(i == n - 1)},
        {"length", Value::integer(n)},
        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
        {"previtem", i > 0 ? items[i - 1] : Value::undefined("'loop.previtem' is undefined")},
        {"nextitem", i + 1 < n ? items[i + 1] : Value::undefined("'loop.nextitem' is undefined")}};
    frames_.emplace_back();
    frames_.back()["loop"] = Value::dict(std::move(loop));
    Status st = bind_targets(s.targets, items[i], frames_.back(), s.pos);
    if (st.is_ok()) st = exec_body(s.body, out);
    frames_.pop_back();
    FS_RETURN_IF_ERROR(st);
    Flow flow = flow_;
    flow_ = Flow::kNormal;
    if (flow == Flow::kBreak) break;
  }
  return Status::ok();
}

Result<CallArgs> Evaluator::eval_args(const Expr& e, size_t first) {
  CallArgs args;
  for (size_t i = first; i < e.args.size(); ++i) {
    FS_ASSIGN_OR_RETURN(Value v, eval(*e.args[i]));
    args.args.push_back(std::move(v));
  }
  for (const auto& [k, expr] : e.kwargs) {
    FS_ASSIGN_OR_RETURN(Value v, eval(*expr));
    args.kwargs.emplace_back(k, std::move(v));
  }
  return args;
}

Result<Value> Evaluator::eval(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal;
    case Expr::Kind::kName: {
      if (const Value* v = lookup(e.name)) return *v;
      static constexpr const char* kGlobals[] = {"range",        "namespace", "raise_exception",
                                                 "strftime_now", "dict",      "caller"};
      for (const char* g : kGlobals) {
        if (e.name == g && (e.name != "caller" || !callers_.empty())) {
          return Value::callable(Callable{e.name, nullptr});
        }
      }
      return Value::undefined(fmt::format("'{}' is undefined", e.name));
    }
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      for (const auto& a : e.args) {
        FS_ASSIGN_OR_RETURN(Value v, eval(*a));
        items.push_back(std::move(v));
      }
      Value v = Value::list(std::move(items), e.kind == Expr::Kind::kTuple);
      if (v.depth() > kMaxValueDepth) return error(e.pos, "value nested too deeply");
      return v;
    }
    case Expr::Kind::kDict: {
      ValueDict d;
      for (const auto& [k, v] : e.dict_items) {
        FS_ASSIGN_OR_RETURN(Value key, eval(*k));
        std::optional<std::string> encoded = dict_key(key);
        if (!encoded)
          return error(k->pos, fmt::format("unsupported dict key type '{}'", key.type_name()));
        FS_ASSIGN_OR_RETURN(Value value, eval(*v));
        d.set(std::move(*encoded), std::move(value));
      }
      Value v = Value::dict(std::move(d));
      if (v.depth() > kMaxValueDepth) return error(e.pos, "value nested too deeply");
      return v;
    }
    case Expr::Kind::kAttr: {
      FS_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
      if (obj.is_undefined()) return error(e.pos, obj.as_string());
      return py_getattr(obj, e.name);
    }
    case Expr::Kind::kItem: {
      FS_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
      FS_ASSIGN_OR_RETURN(Value key, eval(*e.args[1]));
      if (obj.is_undefined()) return error(e.pos, obj.as_string());
      return py_getitem(obj, key);
    }
    case Expr::Kind::kSlice:
      return eval_slice(e);
    case Expr::Kind::kCall:
      return eval_call(e);
    case Expr::Kind::kFilter:
      return eval_filter_chain(e, nullptr);
    case Expr::Kind::kTest: {
      FS_ASSIGN_OR_RETURN(Value input, eval(*e.args[0]));
      FS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
      Result<bool> r = apply_test(e.name, input, args);
      if (!r.is_ok()) return at(e.pos, r.status());
      return Value::boolean(*r != e.negate);
    }
    case Expr::Kind::kUnary: {
      FS_ASSIGN_OR_RETURN(Value v, eval(*e.args[0]));
      if (e.name == "not") return Value::boolean(!v.truthy());
      if (!v.is_number()) {
        if (v.is_undefined()) return error(e.pos, v.as_string());
        return error(e.pos,
                     fmt::format("bad operand type for unary {}: '{}'", e.name, v.type_name()));
      }
      if (e.name == "+") return v.is_float() ? v : Value::integer(v.as_int());
      if (v.is_float()) return Value::floating(-v.as_double());
      if (v.as_int() == INT64_MIN) return error(e.pos, "integer overflow");
      return Value::integer(-v.as_int());
    }
    case Expr::Kind::kBinary:
      return eval_binary(e);
    case Expr::Kind::kCompare:
      return eval_compare(e);
    case Expr::Kind::kCond: {
      FS_ASSIGN_OR_RETURN(Value c, eval(*e.args[0]));
      if (c.truthy()) return eval(*e.args[1]);
      if (e.args[2]) return eval(*e.args[2]);
      return Value::undefined("the inline if-expression evaluated to false and has no else");
    }
  }
  return error(e.pos, "unknown expression");
}

Result<Value> Evaluator::eval_filter_chain(const Expr& e, const Value* block_input) {
  if (e.kind != Expr::Kind::kFilter) {
    if (block_input != nullptr && e.kind == Expr::Kind::kLiteral) return *block_input;
    return eval(e);
  }
  FS_ASSIGN_OR_RETURN(Value input, eval_filter_chain(*e.args[0], block_input));
  FS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
  Result<Value> r = apply_filter(e.name, input, args, options_);
  if (!r.is_ok()) return at(e.pos, r.status());
  return r;
}

Result<Value> Evaluator::eval_call(const Expr& e) {
  const Expr& callee = *e.args[0];
  if (callee.kind == Expr::Kind::kAttr) {
    FS_ASSIGN_OR_RETURN(Value obj, eval(*callee.args[0]));
    if (obj.is_undefined()) return error(callee.pos, obj.as_string());
    FS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
    if (obj.is_mapping()) {
      const Value* member = obj.dict().find(callee.name);
      if (member != nullptr && member->is_callable() && member->callable_value().macro) {
        return call_macro(*member->callable_value().macro, args, nullptr, e.pos);
      }
    }
    Result<Value> r = call_method(obj, callee.name, args, options_);
    if (!r.is_ok()) return at(callee.pos, r.status());
    return r;
  }
  FS_ASSIGN_OR_RETURN(Value fn, eval(callee));
  if (fn.is_undefined()) return error(callee.pos, fn.as_string());
  if (!fn.is_callable())
    return error(callee.pos, fmt::format("'{}' object is not callable", fn.type_name()));
  FS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
  const Callable& c = fn.callable_value();
  if (c.macro != nullptr) return call_macro(*c.macro, args, nullptr, e.pos);
  return call_global(c.name, args, e.pos);
}

Result<Value> Evaluator::call_macro(const Stmt& macro, const CallArgs& args, const Stmt* caller,
                                    SourcePos pos) {
  if (call_depth_ >= options_.max_call_depth) {
    return error(pos, fmt::format("macro calls nested deeper than {}", options_.max_call_depth));
  }
  if (macro.kind == Stmt::Kind::kCallBlock) {  // caller(): the body of the {% call %} block
    std::string out;
    FS_RETURN_IF_ERROR(exec_body(macro.body, out));
    return Value::string(std::move(out));
  }
  if (args.args.size() > macro.params.size()) {
    return error(pos, fmt::format("macro '{}' takes {} arguments, got {}", macro.text,
                                  macro.params.size(), args.args.size()));
  }
  Frame frame;
  for (size_t i = 0; i < macro.params.size(); ++i) {
    const auto& [pname, def] = macro.params[i];
    const Value* given = args.get(i, pname);
    if (given != nullptr) {
      frame[pname] = *given;
    } else if (def) {
      FS_ASSIGN_OR_RETURN(frame[pname], eval(*def));
    } else {
      frame[pname] = Value::undefined(fmt::format("'{}' is undefined", pname));
    }
  }
  for (const auto& [k, v] : args.kwargs) {
    bool known = false;
    for (const auto& p : macro.params) known = known || p.first == k;
    if (!known) return error(pos, fmt::format("macro '{}' has no argument '{}'", macro.text, k));
  }
  size_t saved_floor = scope_floor_;
  frames_.push_back(std::move(frame));
  scope_floor_ = frames_.size() - 1;
  if (caller != nullptr) callers_.push_back(caller);
  if (caller == nullptr && !callers_.empty()) callers_.push_back(nullptr);
  ++call_depth_;
  std::string out;
  Status st = exec_body(macro.body, out);
  --call_depth_;
  if (!callers_.empty()) callers_.pop_back();
  frames_.pop_back();
  scope_floor_ = saved_floor;
  flow_ = Flow::kNormal;
  FS_RETURN_IF_ERROR(st);
  return Value::string(std::move(out));
}

Result<Value> Evaluator::call_global(const std::string& name, const CallArgs& args, SourcePos pos) {
  if (name == "raise_exception") {
    const Value* msg = args.get(0, "message");
    return error(pos, msg != nullptr ? msg->str() : "");
  }
  if (name == "caller") {
    if (callers_.empty() || callers_.back() == nullptr) return error(pos, "no caller here");
    const Stmt* block = callers_.back();
    callers_.push_back(nullptr);
    Result<Value> r = call_macro(*block, args, nullptr, pos);
    callers_.pop_back();
    return r;
  }
  if (name == "namespace" || name == "dict") {
    ValueDict d;
    if (!args.args.empty()) {
      if (!args.args[0].is_mapping()) return error(pos, name + "() takes a mapping");
      d = args.args[0].dict();
    }
    for (const auto& [k, v] : args.kwargs) d.set(k, v);
    Value v = name == "dict" ? Value::dict(std::move(d)) : Value::make_namespace(std::move(d));
    if (v.depth() > kMaxValueDepth) return error(pos, "value nested too deeply");
    if (v.is_namespace()) namespaces_.push_back(v);
    return v;
  }
  if (name == "range") {
    int64_t start = 0, stop = 0, step = 1;
    for (const Value& a : args.args) {
      if (!a.is_int() && !a.is_bool()) return error(pos, "range() takes integers");
    }
    if (args.args.size() == 1) {
      stop = args.args[0].as_int();
    } else if (args.args.size() == 2 || args.args.size() == 3) {
      start = args.args[0].as_int();
      stop = args.args[1].as_int();
      if (args.args.size() == 3) step = args.args[2].as_int();
    } else {
      return error(pos, "range() takes 1 to 3 arguments");
    }
    if (step == 0) return error(pos, "range() step must not be zero");
    std::vector<Value> items;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (items.size() >= options_.max_list_items) return error(pos, "range() too long");
      items.push_back(Value::integer(i));
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    return Value::list(std::move(items));
  }
  if (name == "strftime_now") {
    const Value* f = args.get(0, "format");
    if (f == nullptr || !f->is_string()) return error(pos, "strftime_now() takes a format string");
    std::time_t now = options_.now_unix_s >= 0 ? static_cast<std::time_t>(options_.now_unix_s)
                                               : std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = f->as_string().size() < 200
                   ? std::strftime(buf, sizeof(buf), f->as_string().c_str(), &tm)
                   : 0;
    return Value::string(std::string(buf, n));
  }
  return error(pos, fmt::format("'{}' is not callable", name));
}

}  // namespace fs::jinja
