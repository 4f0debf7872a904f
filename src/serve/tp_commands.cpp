#include "tp_commands.hpp"

#include <chrono>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace polyllama {

using json = nlohmann::json;

namespace {

json to_json(const LiveRequest& r) {
  return {{"ids", r.ids},
          {"temperature", r.sampling.temperature},
          {"top_k", r.sampling.top_k},
          {"top_p", r.sampling.top_p},
          {"repetition_penalty", r.sampling.repetition_penalty},
          {"seed", r.sampling.seed},
          {"max_new_tokens", r.max_new_tokens},
          {"stop", r.stop},
          {"ignore_eos", r.ignore_eos},
          {"text_after_prompt", r.text_after_prompt}};
}

LiveRequest from_json(const json& j) {
  LiveRequest r;
  r.ids = j.at("ids").get<std::vector<int32_t>>();
  r.sampling.temperature = j.at("temperature");
  r.sampling.top_k = j.at("top_k");
  r.sampling.top_p = j.at("top_p");
  r.sampling.repetition_penalty = j.at("repetition_penalty");
  r.sampling.seed = j.at("seed");
  r.max_new_tokens = j.at("max_new_tokens");
  r.stop = j.at("stop").get<std::vector<std::string>>();
  r.ignore_eos = j.at("ignore_eos");
  r.text_after_prompt = j.at("text_after_prompt");
  return r;
}

// MPI_Bcast that waits in MPI_Test with sleeps on the receivers (Open MPI's blocking wait spins).
void bcast_polling(void* buf, int count, MPI_Datatype type, MPI_Comm comm, bool root) {
  MPI_Request req;
  MPI_Ibcast(buf, count, type, 0, comm, &req);
  int done = 0;
  while (true) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (!root) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace

void broadcast_commands(TpCommands& cmd, MPI_Comm comm, bool root) {
  std::string bytes;
  if (root) {
    json j = {{"cancel", cmd.cancel}, {"stop", cmd.stop}, {"submit", json::array()}};
    for (const auto& [key, r] : cmd.submit) j["submit"].push_back({{"key", key}, {"request", to_json(r)}});
    bytes = j.dump();
  }
  int64_t n = static_cast<int64_t>(bytes.size());
  bcast_polling(&n, 1, MPI_INT64_T, comm, root);
  bytes.resize(static_cast<size_t>(n));
  bcast_polling(bytes.data(), static_cast<int>(n), MPI_CHAR, comm, root);
  if (root) return;
  const json j = json::parse(bytes);
  cmd = TpCommands{};
  cmd.cancel = j.at("cancel").get<std::vector<uint64_t>>();
  cmd.stop = j.at("stop");
  for (const json& s : j.at("submit")) cmd.submit.emplace_back(s.at("key").get<uint64_t>(), from_json(s.at("request")));
}

}  // namespace polyllama
