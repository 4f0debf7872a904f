// The JSON attributes of a model.h5, checked where they are read (read_meta) so that a damaged or hand-edited
// checkpoint fails with exit 1 naming the file and attribute, not later with a raw parser message.
#include <nlohmann/json.hpp>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/core/error.hpp"

namespace polyllama {

namespace {

using json = nlohmann::json;

json parse_object(const std::string& text, const std::string& model_h5, const char* attr) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail_input(model_h5 + ": attribute '" + attr + "' is not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) fail_input(model_h5 + ": attribute '" + attr + "' is not a JSON object");
  return j;
}

// A field of trainer_state that resume reads as an integer >= min.
void check_count(const json& j, const char* key, int64_t min, const std::string& model_h5) {
  const std::string where = model_h5 + ": attribute 'trainer_state': ";
  if (!j.contains(key)) fail_input(where + "'" + key + "' is missing");
  const json& v = j.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < min)
    fail_input(where + "'" + key + "' must be an integer >= " + std::to_string(min) + ", got " + v.dump());
}

}  // namespace

void check_meta(const CheckpointMeta& m, const std::string& model_h5) {
  parse_object(m.config_json, model_h5, "config");  // its fields: ModelConfig::from_hf_json, which names them
  if (!m.chat_template_json.empty()) parse_object(m.chat_template_json, model_h5, "chat_template");
  if (m.trainer_json.empty()) return;  // a fresh init
  const json j = parse_object(m.trainer_json, model_h5, "trainer_state");
  for (const char* key : {"step", "consumed_samples", "consumed_tokens", "optimizer_steps"}) check_count(j, key, 0, model_h5);
  if (j.contains("skipped_steps")) check_count(j, "skipped_steps", 0, model_h5);
  if (j.contains("global_batch")) {
    check_count(j, "global_batch", 1, model_h5);
  } else {
    check_count(j, "micro_batch", 1, model_h5);
    check_count(j, "accum_steps", 1, model_h5);
  }
}

}  // namespace polyllama
