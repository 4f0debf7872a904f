// libFuzzer target: the JSON attributes of a checkpoint's model.h5 as a load reads them (check_meta: config,
// trainer_state, chat_template), then what the verbs do with attributes that passed: ModelConfig::from_hf_json on
// the config (also `convert`'s reading of a Hugging Face config.json), the trainer state's counters read as resume
// reads them (Trainer::resume_from), and the chat template (ChatTemplate::from_json). Whatever check_meta accepts
// must read without any other exception; an accepted config must read back unchanged from its own to_hf_json().
//
// Input: "CONFIG JSON\n#####\nTRAINER STATE JSON\n#####\nCHAT TEMPLATE JSON" (empty parts: a fresh init without a
// template, as the writer stores them).
#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/data/chat_template.hpp"
#include "polyllama/model/config.hpp"

using namespace polyllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split_parts(data, size, 3);
  CheckpointMeta m;
  m.config_json = std::string(parts[0]);
  m.trainer_json = std::string(parts[1]);
  m.chat_template_json = std::string(parts[2]);
  fuzz::expect_clean([&] {
    check_meta(m, "fuzz/model.h5");
    if (!m.trainer_json.empty()) {  // the reads of Trainer::resume_from, which check_meta vouches for
      const auto j = nlohmann::json::parse(m.trainer_json);
      for (const char* key : {"step", "consumed_samples", "consumed_tokens", "optimizer_steps"})
        fuzz::require(j.at(key).get<int64_t>() >= 0, "trainer_state counters are >= 0");
      j.value("skipped_steps", int64_t{0});
      const int64_t rows = j.contains("global_batch")
                               ? j.at("global_batch").get<int64_t>()
                               : j.at("micro_batch").get<int64_t>() * j.at("accum_steps").get<int64_t>();
      (void)rows;
    }
    if (!m.chat_template_json.empty()) ChatTemplate::from_json(m.chat_template_json, "fuzz/model.h5 chat_template");
    const ModelConfig c = ModelConfig::from_hf_json(nlohmann::json::parse(m.config_json), "fuzz/model.h5");
    c.validate();
    const nlohmann::json back = c.to_hf_json();
    fuzz::require(ModelConfig::from_hf_json(back, "round trip").to_hf_json() == back, "to_hf_json reads back");
  });
  return 0;
}
