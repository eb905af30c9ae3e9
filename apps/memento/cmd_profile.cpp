// PLACEHOLDER until the command lands: replaced by its real implementation.
#include "commands.h"
#include "memento/core/error.h"
namespace memento::cli {
void add_profile_command(CLI::App& app) {
  app.add_subcommand("profile", "PLACEHOLDER")->callback([] { throw memento::Error("memento profile: PLACEHOLDER"); });
}
}  // namespace memento::cli
