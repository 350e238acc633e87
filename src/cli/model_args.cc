#include "cli/model_args.h"

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "core/log.h"
#include "core/thread_pool.h"
#include "dist/mpi_communicator.h"
#include "model/model_path.h"
#include "model/model_shapes.h"
#include "model/model_weights.h"

#ifdef FASTSERVE_WITH_CUDA
#include "backend/cuda/cuda_executor.h"
#include "backend/cuda/device_info.h"
#endif

namespace fs::cli {

namespace {

std::string dummy_spec(const ModelArgs& args) {
  return args.model == "default" ? "smollm2-135m" : args.model;
}

// A dummy model's runtime; the CPU model (random weights in host memory) only when cpu_model.
Result<ModelRuntime> load_dummy_runtime(const ModelArgs& args, const ModelConfig& config,
                                        bool cpu_model) {
  const std::string name = dummy_spec(args);
  std::unique_ptr<CausalLm> lm;
  if (cpu_model) {
    FS_ASSIGN_OR_RETURN(LoadedModel m, make_dummy_model(config, name));
    lm = CausalLm::create(std::move(m));
  }
  std::string tokenizer = args.tokenizer;
  if (tokenizer.empty()) {
    if (Result<std::string> path = resolve_model_path("default"); path.is_ok()) {
      tokenizer = *path;
    } else {
      log_warn(
          "dummy model '{}': no tokenizer (the default model is not installed; pass --tokenizer): "
          "token ids only",
          name);
    }
  }
  return make_dummy_runtime(name, std::move(lm), config, tokenizer);
}

Status check_args(const ModelArgs& args) {
  if (!args.tokenizer.empty() && args.load_format != "dummy") {
    return invalid_argument("--tokenizer is for --load-format dummy (a model file brings its own)");
  }
  return Status::ok();
}

// --tp/--pp > 1: this MPI rank's shard and its side of the distributed executor. On the CPU every
// rank maps the model file and keeps its shard; with --device cuda each rank uploads its shard (or
// makes dummy weights of it) to its own GPU.
// True inside a rank that an MPI launcher started (Open MPI's, or a PMI/PMIx one: srun, hydra).
bool under_mpi_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

// --tp/--pp > 1 without a launcher: runs this same command as `mpirun -np N` on this host (one
// rank a GPU with --device cuda). Returns only when mpirun cannot be run.
Status spawn_ranks(int world) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t pos = 0; pos < all.size();) {
    const size_t end = all.find('\0', pos);
    args.push_back(all.substr(pos, end - pos));
    pos = end == std::string::npos ? all.size() : end + 1;
  }
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (args.empty() || n <= 0) {
    return make_error(StatusCode::kUnavailable, "--tp/--pp: cannot read this process's command line");
  }
  exe[n] = '\0';
  std::vector<std::string> cmd = {"mpirun", "-np", std::to_string(world), "--bind-to", "none"};
  if (geteuid() == 0) cmd.push_back("--allow-run-as-root");
  if (static_cast<unsigned>(world) > std::thread::hardware_concurrency()) {
    cmd.push_back("--oversubscribe");
  }
  cmd.push_back(exe);
  cmd.insert(cmd.end(), args.begin() + 1, args.end());
  // One host: shared memory between ranks, no ssh, no ptrace-based copies (containers); NVLink
  // multicast off for GPU ranks. The user's own settings win.
  setenv("OMPI_MCA_btl", "self,vader", 0);
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  setenv("OMPI_MCA_plm_rsh_agent", "false", 0);
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  std::string line;
  for (const std::string& a : cmd) line += (line.empty() ? "" : " ") + a;
  log_info("starting {} ranks: {}", world, line);
  std::vector<char*> argv;
  for (std::string& a : cmd) argv.push_back(a.data());
  argv.push_back(nullptr);
  execvp("mpirun", argv.data());
  return make_error(StatusCode::kUnavailable,
                    "--tp/--pp: cannot run mpirun ({}); install openmpi-bin or start the ranks "
                    "with mpirun -np {}",
                    std::strerror(errno), world);
}

Result<ModelSetup> load_dist_setup(const ModelArgs& args) {
  if (args.device != "cpu" && args.device != "cuda") {
    return invalid_argument("--device '{}': expected cpu or cuda", args.device);
  }
#ifndef FASTSERVE_WITH_MPI
  return unimplemented(
      "--tp/--pp: this fastserve was built without MPI (install libopenmpi-dev and rebuild)");
#else
  if (!under_mpi_launcher()) {
    FS_RETURN_IF_ERROR(spawn_ranks(args.tp * args.pp));
  }
  FS_ASSIGN_OR_RETURN(std::unique_ptr<dist::MpiCommunicator> world,
                      dist::MpiCommunicator::init_world(nullptr, nullptr));
  const dist::StageSplit split =
      args.pp_layer_split == "even" ? dist::StageSplit::kEven : dist::StageSplit::kBalanced;
  ModelSetup setup;
  dist::DistSetup d;
  if (args.device == "cpu") {
    FS_ASSIGN_OR_RETURN(setup.runtime, load_runtime(args));
    FS_ASSIGN_OR_RETURN(d, dist::make_dist(setup.runtime.lm->loaded(), std::move(world), args.tp,
                                           args.pp, args.pp_micro_batches, split));
  } else {
    FS_RETURN_IF_ERROR(check_args(args));
    if (args.threads > 0) set_default_pool_threads(args.threads);
    if (args.load_format == "dummy") {
      FS_ASSIGN_OR_RETURN(ModelConfig config, dummy_model_config(dummy_spec(args)));
      FS_ASSIGN_OR_RETURN(setup.runtime, load_dummy_runtime(args, config, /*cpu_model=*/false));
      FS_ASSIGN_OR_RETURN(d, dist::make_dist_cuda(nullptr, config, std::move(world), args.tp,
                                                  args.pp, args.pp_micro_batches, split));
    } else {
      FS_ASSIGN_OR_RETURN(std::string path, resolve_model_path(args.model));
      FS_ASSIGN_OR_RETURN(setup.runtime, load_model_runtime(path));
      const LoadedModel& model = setup.runtime.lm->loaded();
      FS_ASSIGN_OR_RETURN(d, dist::make_dist_cuda(&model, model.config, std::move(world), args.tp,
                                                  args.pp, args.pp_micro_batches, split));
    }
  }
  setup.runtime.lm.reset();  // the shard lives in the executor / worker
  setup.executor = std::move(d.executor);
  setup.worker = std::move(d.worker);
  if (setup.executor) {
    log_info("model '{}' on {}", setup.runtime.model_path, setup.executor->device_name());
  }
  return setup;
#endif
}

}  // namespace

void add_model_args(CLI::App& app, ModelArgs& args, bool with_device) {
  app.add_option("--model", args.model,
                 "a .gguf file or an HF folder; 'default' = SmolLM2-135M-Instruct (Q4_1); with "
                 "--load-format dummy: a shape name or a config.json");
  app.add_option("--threads", args.threads,
                 "CPU threads (default: FASTSERVE_THREADS or all cores)");
  std::string shapes;
  for (const NamedShape& s : named_shapes())
    shapes += (shapes.empty() ? "" : ", ") + std::string(s.name);
  app.add_option("--load-format", args.load_format,
                 "auto: the model file's weights; dummy: random weights for --model " + shapes +
                     " or an HF config.json (benchmarks without weight files)")
      ->check(CLI::IsMember({"auto", "dummy"}));
  app.add_option("--tokenizer", args.tokenizer,
                 "with --load-format dummy: a .gguf or a folder with tokenizer.json (default: the "
                 "default model's)");
  if (with_device) {
    app.add_option("--device", args.device, "cpu | cuda (the first GPU)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    app.add_option("--tp", args.tp, "tensor-parallel ranks (run under mpirun -np tp*pp)")
        ->check(CLI::PositiveNumber);
    app.add_option("--pp", args.pp, "pipeline-parallel stages (run under mpirun -np tp*pp)")
        ->check(CLI::PositiveNumber);
    app.add_option("--pp-micro-batches", args.pp_micro_batches,
                   "with --pp: batches in flight at once, 1..2 pp (default pp: every stage busy; "
                   "1: one batch at a time)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--pp-layer-split", args.pp_layer_split,
                   "with --pp: balanced (default: the last stage gets fewer layers, as many as its "
                   "LM head costs) | even (the same number of layers per stage)")
        ->check(CLI::IsMember({"balanced", "even"}));
  }
}

Result<ModelRuntime> load_runtime(const ModelArgs& args) {
  FS_RETURN_IF_ERROR(check_args(args));
  if (args.threads > 0) set_default_pool_threads(args.threads);
  if (args.load_format == "dummy") {
    FS_ASSIGN_OR_RETURN(ModelConfig config, dummy_model_config(dummy_spec(args)));
    return load_dummy_runtime(args, config, /*cpu_model=*/true);
  }
  FS_ASSIGN_OR_RETURN(std::string path, resolve_model_path(args.model));
  return load_model_runtime(path);
}

Result<ModelSetup> load_model_setup(const ModelArgs& args) {
  if (args.tp * args.pp > 1) return load_dist_setup(args);
  ModelSetup setup;
  if (args.device == "cpu") {
    FS_ASSIGN_OR_RETURN(setup.runtime, load_runtime(args));
    return setup;
  }
  if (args.device != "cuda")
    return invalid_argument("--device '{}': expected cpu or cuda", args.device);
#ifndef FASTSERVE_WITH_CUDA
  return unimplemented(
      "--device cuda: this fastserve was built without the CUDA backend (no nvcc when it was "
      "configured); "
      "install the CUDA toolkit and rebuild with -DFASTSERVE_CUDA=ON");
#else
  FS_RETURN_IF_ERROR(check_args(args));
  if (args.threads > 0) set_default_pool_threads(args.threads);
  const std::vector<cuda::DeviceInfo> devices = cuda::list_devices();
  if (devices.empty()) {
    return make_error(
        StatusCode::kUnavailable,
        "--device cuda: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  }
  std::unique_ptr<cuda::CudaModel> model;
  if (args.load_format == "dummy") {
    FS_ASSIGN_OR_RETURN(ModelConfig config, dummy_model_config(dummy_spec(args)));
    FS_ASSIGN_OR_RETURN(setup.runtime, load_dummy_runtime(args, config, /*cpu_model=*/false));
    FS_ASSIGN_OR_RETURN(model, cuda::CudaModel::dummy(config));
  } else {
    FS_ASSIGN_OR_RETURN(std::string path, resolve_model_path(args.model));
    FS_ASSIGN_OR_RETURN(setup.runtime, load_model_runtime(path));
    FS_ASSIGN_OR_RETURN(model, cuda::CudaModel::upload(setup.runtime.lm->loaded()));
    setup.runtime.lm.reset();  // the weights live on the GPU now
  }
  FS_ASSIGN_OR_RETURN(setup.executor, cuda::CudaExecutor::create(std::move(model)));
  log_info("model '{}' on {}", setup.runtime.model_path, setup.executor->device_name());
  return setup;
#endif
}

int run_dist_worker(ModelSetup& setup, const char* command) {
  // mpirun forwards SIGINT/SIGTERM to every rank; rank 0 stops the server and then tells the
  // workers to exit, so a worker must outlive that signal rather than leave rank 0 waiting.
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  const Status s = setup.worker->run();
  if (!s.is_ok()) {
    std::fprintf(stderr, "fastserve %s: %s\n", command, s.message().c_str());
    return 1;
  }
  return 0;
}

Result<std::vector<int32_t>> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    int32_t id = 0;
    const auto [end, ec] = std::from_chars(text.data() + pos, text.data() + comma, id);
    if (ec != std::errc() || end != text.data() + comma || pos == comma) {
      return invalid_argument("'{}' is not a comma-separated list of token ids", text);
    }
    ids.push_back(id);
    pos = comma + 1;
  }
  return ids;
}

StreamPrinter::StreamPrinter(const ModelRuntime& runtime, bool enabled)
    : runtime_(runtime), enabled_(enabled) {
  if (runtime.tokenizer) {
    decoder_ =
        std::make_unique<IncrementalDecoder>(*runtime.tokenizer, /*skip_special_tokens=*/true);
  }
}

void StreamPrinter::on_token(int32_t id) {
  if (!enabled_) return;
  if (decoder_) {
    const std::string piece = decoder_->feed(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
  } else {
    std::printf("%d ", id);
  }
  std::fflush(stdout);
}

void StreamPrinter::finish() {
  if (!enabled_) return;
  if (decoder_) {
    const std::string rest = decoder_->finish();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace fs::cli
