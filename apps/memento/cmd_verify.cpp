// PLACEHOLDER until the command lands: replaced by its real implementation.
#include "commands.h"
#include "memento/core/error.h"
namespace memento::cli {
void add_verify_command(CLI::App& app) {
  app.add_subcommand("verify", "PLACEHOLDER")->callback([] { throw memento::Error("memento verify: PLACEHOLDER"); });
}
}  // namespace memento::cli
