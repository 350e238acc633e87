// Subcommands of the `fastserve` binary register themselves: FS_REGISTER_COMMAND(name, help, fn) in
// their own src/cli/cmd_<name>.cc. fn gets argv with argv[0] = "fastserve <name>".
#pragma once

#include <functional>
#include <map>
#include <string>

namespace fs::cli {

using CommandFn = int (*)(int argc, char** argv);

struct Command {
  std::string help;
  CommandFn fn;
};

std::map<std::string, Command>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* help, CommandFn fn) {
    command_registry()[name] = Command{help, fn};
  }
};

}  // namespace fs::cli

#define FS_REGISTER_COMMAND(name, help, fn) \
  static ::fs::cli::CommandRegistrar fs_cmd_registrar_##fn(name, help, fn)
