#pragma once
/// \file
/// Helpers shared by the `memento` subcommands (plan, profile, verify, train, ...):
/// exit-code conventions, the `--format text|json` option, budget and list options,
/// human-readable numbers, aligned text tables and JSON on stdout.
///
/// Conventions every command follows:
/// - Bad input (missing file, malformed profile, bad option value): throw memento::Error
///   (usually InvalidArgument) with a message that names the option and says what to
///   change; main() prints it as one line on stderr and exits with kExitBadInput (2).
/// - The command ran but its outcome is negative (infeasible plan, verification
///   mismatch, a planner that failed in a sweep): print the full report first, then call
///   exit_with(kExitNegative) (exit code 1).
/// - Reports go to stdout (text or JSON); warnings and errors to stderr.
///
/// Example (a command body):
/// \code
///   namespace cli = memento::cli;
///   std::string profile_path, budget_text, format_text = "text";
///   auto* command = app.add_subcommand("plan", "...");
///   command->add_option("--profile", profile_path, "profile JSON");
///   command->add_option("--budget", budget_text, "bytes (1.5GiB) or % of the store-all peak");
///   cli::add_format_option(command, format_text);
///   command->callback([&] {
///     const cli::Format format = cli::parse_format(format_text);
///     const memento::ChainProfile profile = cli::load_profile(profile_path);
///     const int64_t budget_bytes = cli::read_budget(budget_text, profile);
///     cli::TextTable table({"stage", "saved"});
///     table.align("lr").add_row({"block0", memento::format_bytes(1024)});
///     if (format == cli::Format::Json) cli::print_json({{"budget_bytes", budget_bytes}});
///     else std::cout << table.str();
///     if (budget_bytes < 1) cli::exit_with(cli::kExitNegative);
///   });
/// \endcode

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json_fwd.hpp>

#include "memento/core/codec.h"
#include "memento/core/gac.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento::cli {

/// Exit codes of every `memento` command.
enum ExitCode : int {
  kExitSuccess = 0,   ///< the command did what was asked and the outcome is positive
  kExitNegative = 1,  ///< the report is complete but negative (infeasible, mismatch, a planner failed)
  kExitBadInput = 2,  ///< bad input: one line on stderr saying what to change
};

/// Ends the running command with `code` after its report was printed: throws
/// CLI::RuntimeError(code), which main() turns into the process exit code silently.
[[noreturn]] void exit_with(int code);

/// Checks before any work starts that the file `path` given with `option` can be written
/// (see memento::check_output_path; a stale temporary of it is removed). Throws
/// InvalidArgument naming the option.
void check_output(const std::string& path, const std::string& option);

/// Writes an output file atomically (memento::write_file_atomically); an IoError comes out
/// as InvalidArgument naming the option.
void write_output(const std::string& path, const std::string& contents, const std::string& option);

/// Throws InvalidArgument("<option> <why>") when `option` was given on the command line of
/// `command` although this run does not use it (`used` false): an option that would be
/// ignored silently is an error.
void refuse_unused(const CLI::App& command, const std::string& option, bool used, const std::string& why);

/// Output format of a report.
enum class Format { Text, Json };

/// Adds `--format text|json` to `command`, bound to `format_text` (keep its default
/// "text"); read it with parse_format() inside the callback.
CLI::Option* add_format_option(CLI::App* command, std::string& format_text);

/// "text" or "json" (case-sensitive); throws InvalidArgument naming `--format` otherwise.
Format parse_format(const std::string& format_text);

/// Reads and validates a profile file. Throws InvalidArgument naming `option` when
/// `path` is empty, and ProfileError (naming the file, stage and field) when it is bad.
ChainProfile load_profile(const std::string& path, const std::string& option = "--profile");

/// Parses a budget option value: an absolute size (`1.5GiB`, `300MB`, `1048576`) or a
/// share of the store-all peak of `profile` (`40%`). Errors name `option`. A budget
/// must be positive.
int64_t read_budget(const std::string& text, const ChainProfile& profile,
                    const std::string& option = "--budget");

/// Parses a comma-separated list of budgets (`20%,30%,2GiB`), each as read_budget().
/// Throws InvalidArgument naming `option` for an empty list or a bad item.
std::vector<int64_t> read_budget_list(const std::string& text, const ChainProfile& profile,
                                      const std::string& option = "--budgets");

/// Splits `a, b,c` on commas and trims blanks; empty items are dropped.
std::vector<std::string> split_list(const std::string& text);

/// Parses `all` (every registered planner) or a comma-separated list of planner names,
/// each checked against planner_names(). Throws InvalidArgument naming `option` and
/// listing the valid names.
std::vector<std::string> read_planner_list(const std::string& text, const std::string& option = "--planners");

/// Parses `--codecs`: none (exact, the default), all, or a list such as bf16,int8. Throws
/// InvalidArgument naming `option` and the valid codecs.
std::vector<Codec> read_codecs(const std::string& text, const std::string& option = "--codecs");

/// Refuses lossy `codecs` for a planner that does not use them, and codecs `profile`
/// (read from `profile_source`, a file or "the measured profile") has no costs for, naming
/// the options to change.
void check_codecs(const std::vector<Codec>& codecs, const std::string& planner, const ChainProfile& profile,
                  const std::string& profile_source);
/// The planner half of check_codecs, for a profile not measured yet.
void check_planner_uses_codecs(const std::vector<Codec>& codecs, const std::string& planner);
/// For a list of planners (`--planners`): refuses lossy `codecs` when none of them uses codecs.
void check_some_planner_uses_codecs(const std::vector<Codec>& codecs,
                                    const std::vector<std::string>& planners);

/// " (lossy: int8)" for a lossy schedule, "" for an exact one: every result shown says so.
std::string lossy_label(const Schedule& schedule);

/// Adds `--codecs LIST` to `command`.
CLI::Option* add_codecs_option(CLI::App* command, std::string& codecs_text, const std::string& what);

/// The `--gac-*` options of the gac planner, as typed.
struct GacArguments {
  std::string mode = "exact";
  std::string proxy = "mag";
  std::string threshold = "ema";
  double alpha = -1;
  double beta = 0.95;
  double temporal_beta = 0.1;
  double temperature = 1.0;
  double theta_min = 1e-3;
  int64_t every = 1;
  int64_t freeze_after = 3;
  std::string spare = "store";
  std::vector<CLI::Option*> options;  ///< filled by add_gac_options, to see which were given
};

/// Adds --gac-mode, --gac-proxy, --gac-threshold, --gac-alpha, --gac-beta,
/// --gac-temporal-beta, --gac-temperature, --gac-theta-min, --gac-every,
/// --gac-freeze-after and --gac-spare to `command`.
void add_gac_options(CLI::App* command, GacArguments& args);
/// GacOptions from the options; throws InvalidArgument naming the option, its range and the
/// value. Refuses --gac-* options for a planner other than gac, and checks the mode against
/// `codecs` (lossy needs codecs, exact and freeze take none).
GacOptions read_gac_options(const GacArguments& args, const std::string& planner,
                            const std::vector<Codec>& codecs);

/// Checks an integer option: returns `value` when value >= minimum, else throws
/// InvalidArgument ("--slots must be at least 1, got 0").
int64_t require_at_least(int64_t value, int64_t minimum, const std::string& option);

/// Durations: "850 ns", "12.3 us", "4.56 ms", "1.234 s", "2.5 min", "3.1 h".
std::string format_seconds(double seconds);

/// A fraction as a percentage with `decimals` digits: 0.1234 -> "12.3%".
std::string format_percent(double fraction, int decimals = 1);

/// A relative change with its sign: 0.1234 -> "+12.3%", -0.05 -> "-5.0%", 0 -> "+0.0%".
std::string format_change(double fraction, int decimals = 1);

/// Bytes in human form with the exact count: "1.50 GiB (1610612736 B)".
std::string format_bytes_exact(int64_t bytes);

/// Aligned plain-text table: a header, a rule, then the rows. Widths count UTF-8 code
/// points, so cells such as "—" align.
///
/// \code
///   memento::cli::TextTable table({"budget", "store-all", "optimal"});
///   table.align("lrr");
///   table.add_row({"40%", "—", "1.23 s"});
///   std::cout << table.str("  ");
/// \endcode
class TextTable {
 public:
  enum class Align { Left, Right };

  /// Columns are named by `headers`; every column starts left-aligned.
  explicit TextTable(std::vector<std::string> headers);

  /// Alignment per column from a string of 'l'/'r', e.g. "lrrr" (shorter strings
  /// leave the remaining columns as they are). Throws InvalidArgument on other letters.
  TextTable& align(const std::string& spec);
  /// Alignment of one column.
  TextTable& align(size_t column, Align alignment);

  /// Appends a row; throws InvalidArgument when it has a different number of cells.
  TextTable& add_row(std::vector<std::string> cells);

  size_t row_count() const { return rows_.size(); }
  size_t column_count() const { return headers_.size(); }

  /// The whole table, each line starting with `indent` and ending in '\n'; columns are
  /// separated by two spaces and trailing blanks are trimmed.
  std::string str(const std::string& indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> alignments_;
  std::vector<std::vector<std::string>> rows_;
};

/// "key  value" lines with the values aligned:
/// \code
///   std::cout << memento::cli::format_fields({{"planner", "optimal"}, {"budget", "1.50 GiB"}});
///   // planner  optimal
///   // budget   1.50 GiB
/// \endcode
std::string format_fields(const std::vector<std::pair<std::string, std::string>>& fields,
                          const std::string& indent = "");

/// Writes `document` as pretty JSON (2-space indent) and a newline to `out` (stdout by
/// default). Invalid UTF-8 in strings is replaced rather than thrown.
void print_json(const nlohmann::json& document);
void print_json(const nlohmann::json& document, std::ostream& out);

/// One line on stderr: "memento: warning: <message>".
void print_warning(const std::string& message);

}  // namespace memento::cli
