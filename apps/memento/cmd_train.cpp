// PLACEHOLDER until the command lands: replaced by its real implementation.
#include "commands.h"
#include "memento/core/error.h"
namespace memento::cli {
void add_train_command(CLI::App& app) {
  app.add_subcommand("train", "PLACEHOLDER")->callback([] { throw memento::Error("memento train: PLACEHOLDER"); });
}
}  // namespace memento::cli
