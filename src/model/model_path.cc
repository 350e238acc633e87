#include "model/model_path.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace fs {

Result<std::string> resolve_model_path(const std::string& arg) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  if (!arg.empty() && arg != "default") {
    if (stdfs::exists(arg, ec)) return arg;
    return not_found("model '{}': no such file or folder", arg);
  }
  if (const char* env = std::getenv("FASTSERVE_MODEL"); env != nullptr && env[0] != '\0') {
    if (stdfs::exists(env, ec)) return std::string(env);
    return not_found("FASTSERVE_MODEL='{}': no such file or folder", env);
  }
  std::vector<stdfs::path> candidates;
  const stdfs::path exe = stdfs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // <repo>/build/fastserve -> <repo>/models; also one level further up for nested build dirs.
    candidates.push_back(exe.parent_path().parent_path() / "models" / kDefaultModelFile);
    candidates.push_back(exe.parent_path().parent_path().parent_path() / "models" /
                         kDefaultModelFile);
  }
  candidates.push_back(stdfs::path("models") / kDefaultModelFile);
  std::string tried;
  for (const stdfs::path& p : candidates) {
    if (stdfs::is_regular_file(p, ec)) return p.lexically_normal().string();
    tried += fmt::format("{}{}", tried.empty() ? "" : ", ", p.lexically_normal().string());
  }
  return not_found(
      "default model {} not found (tried {}); run scripts/setup.sh to install it, or "
      "pass --model PATH / set FASTSERVE_MODEL",
      kDefaultModelFile, tried);
}

}  // namespace fs
