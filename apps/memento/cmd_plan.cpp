// PLACEHOLDER until the command lands: replaced by its real implementation.
#include "commands.h"
#include "memento/core/error.h"
namespace memento::cli {
void add_plan_command(CLI::App& app) {
  app.add_subcommand("plan", "PLACEHOLDER")->callback([] { throw memento::Error("memento plan: PLACEHOLDER"); });
}
}  // namespace memento::cli
