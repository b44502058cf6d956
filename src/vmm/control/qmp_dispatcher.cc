// QMP dispatch: see qmp_dispatcher.h.
#include "vmm/control/qmp_dispatcher.h"

#include <variant>
#include <vector>

#include "vmm/control/qmp_commands.h"
#include "vmm/control/qmp_protocol.h"

namespace kite::qmp {
namespace {

using nlohmann::json;

std::string Reply(Result<json> result, const std::optional<json>& id) {
  if (!result) return ErrorLine(result.error(), id);
  return ReturnLine(*result, id);
}

}  // namespace

Outcome Dispatcher::Handle(const Frame& frame) {
  if (!frame.error.empty()) return {ErrorLine(Err(frame.error), std::nullopt), {}};
  return Handle(frame.text);
}

Outcome Dispatcher::Handle(std::string_view text) {
  auto parsed = ParseRequest(text);
  if (auto* bad = std::get_if<BadRequest>(&parsed)) return {ErrorLine(bad->error, bad->id), {}};
  Request& request = std::get<Request>(parsed);
  const std::optional<json>& id = request.id;

  bool is_negotiation = request.execute == "qmp_capabilities";
  if (!negotiated_ && !is_negotiation) {
    return {ErrorLine(Err(ErrorKind::kCommandNotFound,
                          "Expecting capabilities negotiation with 'qmp_capabilities'"),
                      id),
            {}};
  }
  if (negotiated_ && is_negotiation) {
    return {ErrorLine(Err(ErrorKind::kCommandNotFound,
                          "Capabilities negotiation is already complete, command ignored"),
                      id),
            {}};
  }
  const CommandSpec* spec = FindCommand(request.execute);
  if (spec == nullptr) {
    return {ErrorLine(Err(ErrorKind::kCommandNotFound,
                          "The command " + request.execute + " has not been found"),
                      id),
            {}};
  }
  // Arguments are checked here, before anything else happens.
  if (auto checked = CheckArguments(*spec, request.arguments); !checked) {
    return {ErrorLine(checked.error(), id), {}};
  }
  if (spec->speed == Speed::kFast) {
    Result<json> result = RunCommand(*spec, *machine_, request.arguments);
    if (is_negotiation && result) negotiated_ = true;
    return {Reply(std::move(result), id), {}};
  }
  Machine* machine = machine_;
  return {"", [machine, spec, args = std::move(request.arguments), id]() {
            return Reply(RunCommand(*spec, *machine, args), id);
          }};
}

std::string RunInline(Machine* machine, std::string_view input, FramerLimits limits) {
  Framer framer(limits);
  Dispatcher dispatcher(machine);
  std::vector<Frame> frames;
  framer.Feed(input, &frames);
  std::string out;
  for (const Frame& frame : frames) {
    Outcome outcome = dispatcher.Handle(frame);
    out += outcome.slow ? outcome.slow() : outcome.reply;
  }
  return out;
}

}  // namespace kite::qmp
