// libFuzzer target: the C-Eval and MMLU CSV files (the benchmarks' own release layout: ceval/{dev,val,test}/
// SUBJECT_SPLIT.csv with C-Eval's subject_mapping.json, mmlu/{dev,val}/SUBJECT_SPLIT.csv) through the tasks' load,
// then every question scored against a fuzzed response (letters and the generate-mode answer extraction).
//
// Input: byte 0 picks the options (bit 0: MMLU instead of C-Eval, bit 1: generate instead of letters, bits 2-4:
// few-shot count mod 6, bit 5: skip invalid rows, bit 6: C-Eval's test split, bit 7: C-Eval's subject-key prompt),
// the rest is "SPLIT CSV\n#####\nRESPONSE\n#####\nDEV CSV" (a fixed dev file when the last part is empty).
#include "eval_support.hpp"

using namespace polyllama;

namespace {

constexpr const char* kCevalMapping = R"({"computer_network": ["Computer Network", "计算机网络", "STEM"]})";
constexpr const char* kCevalDev =
    "id,question,A,B,C,D,answer,explanation\n"
    "0,滑动窗口的作用是____。,流量控制,拥塞控制,路由控制,差错控制,A,\"1. 滑动窗口\n2. 流量控制\"\n"
    "1,下列设备属于资源子网的是____。,计算机软件,网桥,交换机,路由器,A,\n"
    "2,\"a \"\"quoted\"\" question\",1,2,3,4,B,\n"
    "3,q,a,b,c,d,C,\n"
    "4,q,a,b,c,d,D,\n";
constexpr const char* kMmluDev =
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.,0,1,2,3,B\n"
    "\"Statement 1 | a. Statement 2 | b.\",\"True, True\",\"False, False\",\"True, False\",\"False, True\",B\n"
    "q,a,b,c,d,C\n"
    "q,a,b,c,d,D\n"
    "q,1.0,2.50,nan,1e3,A\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const fuzz::ScratchDir dir;
  static const bool mapping_written = (dir.write("ceval/subject_mapping.json", kCevalMapping), true);
  (void)mapping_written;
  const uint8_t mode = data[0];
  const std::vector<std::string_view> parts = fuzz::split_parts(data + 1, size - 1, 3);
  const bool mmlu = mode & 1;
  EvalOptions o;
  o.bench_dir = dir.path();
  o.method = (mode & 2) ? "generate" : "loglik";
  o.num_fewshot = ((mode >> 2) & 7) % 6;
  o.skip_invalid = (mode & 32) != 0;
  o.split = !mmlu && (mode & 64) ? "test" : "val";
  if (!mmlu && (mode & 128)) o.prompt_style = "subject-key";
  const std::string subject = mmlu ? "abstract_algebra" : "computer_network";
  const std::string root = mmlu ? "mmlu/" : "ceval/";
  dir.write(root + o.split + "/" + subject + "_" + o.split + ".csv", parts[0]);
  dir.write(root + "dev/" + subject + "_dev.csv", !parts[2].empty() ? parts[2] : mmlu ? kMmluDev : kCevalDev);
  fuzz::expect_clean([&] { fuzz::load_and_score(*make_task(mmlu ? "mmlu" : "ceval"), o, parts[1]); });
  return 0;
}
