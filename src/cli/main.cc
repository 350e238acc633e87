// `fastserve <command> [options]`: one binary, subcommands registered in src/cli/cmd_*.cc.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/command.h"

namespace fs::cli {

std::map<std::string, Command>& command_registry() {
  static std::map<std::string, Command> registry;
  return registry;
}

namespace {
void print_usage() {
  std::printf("usage: fastserve <command> [options]\n\ncommands:\n");
  for (const auto& [name, cmd] : command_registry()) {
    std::printf("  %-12s %s\n", name.c_str(), cmd.help.c_str());
  }
  std::printf("\n`fastserve <command> --help` for the options of one command.\n");
}
}  // namespace

}  // namespace fs::cli

int main(int argc, char** argv) {
  using namespace fs::cli;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage();
    return argc < 2 ? 1 : 0;
  }
  auto& registry = command_registry();
  auto it = registry.find(argv[1]);
  if (it == registry.end()) {
    std::fprintf(stderr, "fastserve: unknown command '%s'\n\n", argv[1]);
    print_usage();
    return 2;
  }
  std::string name = std::string("fastserve ") + argv[1];
  argv[1] = name.data();
  return it->second.fn(argc - 1, argv + 1);
}
