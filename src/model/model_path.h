// Resolves the --model argument of the CLI commands.
#pragma once

#include <string>

#include "core/status.h"

namespace fs {

inline constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

// "default" or "" -> $FASTSERVE_MODEL when set, else models/SmolLM2-135M-Instruct.Q4_1.gguf looked
// up beside the binary's parent folder (/proc/self/exe = <repo>/build/fastserve -> <repo>/models/),
// then under the current directory. Any other argument is returned as given when it exists.
// kNotFound when nothing exists; the message lists the places tried and says to run
// scripts/setup.sh.
Result<std::string> resolve_model_path(const std::string& arg);

}  // namespace fs
