// llama.cpp as a second numerics reference (scripts/make_llamacpp_fixtures.sh builds and runs this).
//
//   llamacpp_logits MODEL.gguf LAST_LOGITS_OUT.f32 N_GREEDY ID,ID,ID,...
//
// Loads the GGUF with llama.cpp's C API, evaluates the prompt ids (no BOS added) in one batch with
// logits for every position, writes the last position's logits (float32 little-endian, [vocab]) and
// prints on stdout one JSON object: "argmax_all" (argmax at every prompt position), "greedy"
// (N_GREEDY tokens, each decoded as a batch of one, argmax of the previous logits) and for both the
// top-1 margins (top logit minus the runner-up: "margin_all", "greedy_margin"). The KV cache is
// f32 and flash attention off, so llama.cpp differs from FastServe only in the matmul kernels
// (both round activations to 8-bit blocks for quantized weights) and f32 summation orders.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

namespace {

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

// Logit of the top token minus the runner-up's: how close a top-1 decision was.
std::string margin(const float* v, int n) {
  const int best = argmax(v, n);
  float second = -1e30f;
  for (int i = 0; i < n; ++i) {
    if (i != best && v[i] > second) second = v[i];
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v[best] - second);
  return buf;
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf LAST_LOGITS_OUT.f32 N_GREEDY ID,ID,...\n", argv[0]);
    return 2;
  }
  const int n_greedy = std::atoi(argv[3]);
  std::vector<llama_token> ids;
  for (const char* p = argv[4]; *p;) {
    char* end = nullptr;
    ids.push_back(static_cast<llama_token>(std::strtol(p, &end, 10)));
    p = (*end == ',') ? end + 1 : end;
  }
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.progress_callback = [](float, void*) { return true; };  // no progress dots
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  const int n_prompt = static_cast<int>(ids.size());
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_prompt + n_greedy + 16);
  cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(n_prompt);
  cp.n_threads = cp.n_threads_batch = 2;
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "cannot create a context\n");
    return 1;
  }
  const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

  llama_batch batch = llama_batch_init(n_prompt, 0, 1);
  for (int i = 0; i < n_prompt; ++i) {
    batch.token[i] = ids[i];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = n_prompt;
  if (llama_decode(ctx, batch) != 0) {
    std::fprintf(stderr, "llama_decode failed on the prompt\n");
    return 1;
  }
  std::string out = "{\"argmax_all\": [", margins = "], \"margin_all\": [";
  for (int i = 0; i < n_prompt; ++i) {
    out += (i ? ", " : "") + std::to_string(argmax(llama_get_logits_ith(ctx, i), vocab));
    margins += (i ? ", " : "") + margin(llama_get_logits_ith(ctx, i), vocab);
  }
  out += margins;
  const float* last = llama_get_logits_ith(ctx, n_prompt - 1);
  FILE* f = std::fopen(argv[2], "wb");
  if (!f || std::fwrite(last, sizeof(float), vocab, f) != static_cast<size_t>(vocab)) {
    std::fprintf(stderr, "cannot write %s\n", argv[2]);
    return 1;
  }
  std::fclose(f);
  out += "], \"greedy\": [";
  margins = "], \"greedy_margin\": [";
  int tok = argmax(last, vocab);
  const float* cur = last;
  for (int g = 0; g < n_greedy; ++g) {
    out += (g ? ", " : "") + std::to_string(tok);
    margins += (g ? ", " : "") + margin(cur, vocab);
    if (g + 1 == n_greedy) break;
    batch.token[0] = tok;
    batch.pos[0] = n_prompt + g;
    batch.n_seq_id[0] = 1;
    batch.seq_id[0][0] = 0;
    batch.logits[0] = 1;
    batch.n_tokens = 1;
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "llama_decode failed at greedy step %d\n", g);
      return 1;
    }
    cur = llama_get_logits_ith(ctx, 0);
    tok = argmax(cur, vocab);
  }
  out += margins + "], \"vocab\": " + std::to_string(vocab) + "}";
  std::puts(out.c_str());
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
