// `fastserve inspect [--model PATH|default] [--tensors]`: loads a model (GGUF file or HF folder),
// checks every tensor, and prints the config and optionally the tensor table.
#include <cstdio>
#include <map>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "model/model_path.h"
#include "model/model_weights.h"

namespace fs::cli {
namespace {

void print_tensor(const WeightTensor& t) {
  std::printf("  %-56s %-5s %-14s %10llu\n", t.name.c_str(),
              std::string(dtype_name(t.dtype)).c_str(), shape_to_string(t.shape).c_str(),
              static_cast<unsigned long long>(t.nbytes));
}

void print_optional(const std::optional<WeightTensor>& t) {
  if (t) print_tensor(*t);
}

// The tensors the forward pass uses, in model order.
void print_tensors(const LoadedModel& m) {
  const ModelWeights& w = m.weights;
  std::printf("\n  %-56s %-5s %-14s %10s\n", "tensor", "dtype", "shape", "bytes");
  print_tensor(w.tok_embd);
  print_optional(w.pos_embd);
  print_optional(w.rope_freqs);
  for (const LayerWeights& l : w.layers) {
    print_tensor(l.attn_norm);
    print_optional(l.attn_norm_b);
    for (const WeightTensor* t : {&l.wq, &l.wk, &l.wv}) print_tensor(*t);
    print_optional(l.bq);
    print_optional(l.bk);
    print_optional(l.bv);
    print_tensor(l.wo);
    print_optional(l.bo);
    print_tensor(l.ffn_norm);
    print_optional(l.ffn_norm_b);
    print_optional(l.w_gate);
    print_tensor(l.w_up);
    print_optional(l.b_up);
    print_tensor(l.w_down);
    print_optional(l.b_down);
  }
  print_tensor(w.output_norm);
  print_optional(w.output_norm_b);
  if (!m.config.tie_word_embeddings) print_tensor(w.output);
}

int run_inspect(int argc, char** argv) {
  CLI::App app{"Load a model (GGUF file or Hugging Face folder), check it, print its config."};
  std::string model = "default";
  bool tensors = false;
  app.add_option("--model", model, "a .gguf file, an HF checkpoint folder, or 'default'");
  app.add_flag("--tensors", tensors, "also print every tensor: name, dtype, shape, bytes");
  CLI11_PARSE(app, argc, argv);

  Result<std::string> path = resolve_model_path(model);
  if (!path.is_ok()) {
    std::fprintf(stderr, "fastserve inspect: %s\n", path.status().message().c_str());
    return 1;
  }
  Result<LoadedModel> m = load_model(*path);
  if (!m.is_ok()) {
    std::fprintf(stderr, "fastserve inspect: %s\n", m.status().to_string().c_str());
    return 1;
  }
  std::map<std::string, int> dtype_counts;
  auto count = [&](const WeightTensor& t) { ++dtype_counts[std::string(dtype_name(t.dtype))]; };
  count(m->weights.tok_embd);
  for (const LayerWeights& l : m->weights.layers) {
    for (const WeightTensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_up, &l.w_down}) count(*t);
    if (l.w_gate) count(*l.w_gate);
  }
  if (!m->config.tie_word_embeddings) count(m->weights.output);
  std::string dtypes;
  for (const auto& [name, n] : dtype_counts) {
    dtypes += fmt::format("{}{} x{}", dtypes.empty() ? "" : ", ", name, n);
  }
  std::printf("%-26s%s\n", "path", m->path.c_str());
  std::printf("%-26s%s\n", "format", m->format == ModelFormat::kGguf ? "gguf" : "safetensors");
  std::printf("%-26s%.1f MiB\n", "weights", static_cast<double>(m->weight_bytes) / (1 << 20));
  std::printf("%-26s%s\n", "matrix dtypes", dtypes.c_str());
  std::printf("%s", m->config.to_string().c_str());
  if (tensors) print_tensors(*m);
  return 0;
}

FS_REGISTER_COMMAND("inspect", "print a model's config and tensors", run_inspect);

}  // namespace
}  // namespace fs::cli
