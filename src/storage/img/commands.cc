// kite-img: dispatch of a parsed command line to its subcommand.
#include "storage/img/commands.h"

#include <type_traits>

namespace kite::img {

int Fail(Console& console, const Error& error) {
  console.err << "kite-img: " << error.message() << "\n";
  return 1;
}

int RunCommand(const Command& command, Console& console) {
  return std::visit(
      [&](const auto& args) -> int {
        using T = std::decay_t<decltype(args)>;
        if constexpr (std::is_same_v<T, HelpArgs>) {
          console.out << UsageText();
          return 0;
        } else if constexpr (std::is_same_v<T, CreateArgs>) {
          return RunCreate(args, console);
        } else if constexpr (std::is_same_v<T, InfoArgs>) {
          return RunInfo(args, console);
        } else if constexpr (std::is_same_v<T, CheckArgs>) {
          return RunCheck(args, console);
        } else if constexpr (std::is_same_v<T, MapArgs>) {
          return RunMap(args, console);
        } else if constexpr (std::is_same_v<T, CompareArgs>) {
          return RunCompare(args, console);
        } else if constexpr (std::is_same_v<T, MeasureArgs>) {
          return RunMeasure(args, console);
        } else if constexpr (std::is_same_v<T, ConvertArgs>) {
          return RunConvert(args, console);
        } else if constexpr (std::is_same_v<T, CommitArgs>) {
          return RunCommit(args, console);
        } else if constexpr (std::is_same_v<T, RebaseArgs>) {
          return RunRebase(args, console);
        } else if constexpr (std::is_same_v<T, ResizeArgs>) {
          return RunResize(args, console);
        } else if constexpr (std::is_same_v<T, SnapshotArgs>) {
          return RunSnapshot(args, console);
        } else if constexpr (std::is_same_v<T, AmendArgs>) {
          return RunAmend(args, console);
        } else {
          static_assert(std::is_same_v<T, BenchArgs>);
          return RunBench(args, console);
        }
      },
      command);
}

}  // namespace kite::img
