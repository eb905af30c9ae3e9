// PLACEHOLDER until the command lands: replaced by its real implementation.
#include "commands.h"
#include "memento/core/error.h"
namespace memento::cli {
void add_models_command(CLI::App& app) {
  app.add_subcommand("models", "PLACEHOLDER")->callback([] { throw memento::Error("memento models: PLACEHOLDER"); });
}
}  // namespace memento::cli
