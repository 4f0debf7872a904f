// polyllama: one binary, one verb per stage (DESIGN.md section 1).
#include <mpi.h>

#include <algorithm>
#include <cstdio>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/parallel/environment.hpp"
#include "polyllama/train/run_dir.hpp"
#include "verbs.hpp"

int main(int argc, char** argv) {
  polyllama::ensure_fast_blas_kernels(argv);
  polyllama::prepare_singleton_mpi();
  MPI_Init(&argc, &argv);
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  polyllama::set_log_rank(world_rank);

  CLI::App app{"polyllama " POLYLLAMA_VERSION
               ": move a LLaMA model to a new language. Verbs, in pipeline order: tokenizer (train, extend, stats), data, "
               "init or convert, resize-vocab, pretrain, sft, generate, eval; bench measures a training step, plan predicts "
               "its memory and time for a layout. `polyllama VERB --help` explains each."};
  app.require_subcommand(1);
  app.set_version_flag("--version", POLYLLAMA_VERSION);
  // In the order the subcommands are added: verbs[i] runs app.get_subcommands({})[i].
  namespace cli = polyllama::cli;
  std::vector<cli::RunFn> verbs = {cli::add_tokenizer(app), cli::add_data(app),     cli::add_init(app),
                                   cli::add_convert(app),   cli::add_pretrain(app), cli::add_sft(app),
                                   cli::add_generate(app),  cli::add_resize_vocab(app), cli::add_eval(app),
                                   cli::add_bench(app),     cli::add_plan(app),         cli::add_serve(app),
                                   cli::add_doctor(app)};
  int rc = 0;
  try {
    std::vector<std::string> args =
        polyllama::cli::expand_config(app, std::vector<std::string>(argv + 1, argv + argc));
    std::reverse(args.begin(), args.end());  // CLI11 consumes a vector from the back
    app.parse(args);
  } catch (const polyllama::Error& e) {
    std::fprintf(stderr, "polyllama: error: %s\n", e.what());
    MPI_Finalize();
    return e.code();
  } catch (const CLI::ParseError& e) {
    rc = app.exit(e);
    if (rc != 0) rc = polyllama::kExitBadInput;
    MPI_Finalize();
    return rc;
  }
  try {
    std::vector<CLI::App*> all = app.get_subcommands({});
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i]->parsed()) rc = verbs[i]();
  } catch (const polyllama::Error& e) {
    std::fprintf(stderr, "polyllama: error: %s\n", e.what());
    std::fflush(stderr);
    polyllama::record_active_run_failure(e.what());  // RUN/status.json of a training verb (world rank 0)
    if (world_size > 1) MPI_Abort(MPI_COMM_WORLD, e.code());
    MPI_Finalize();
    return e.code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "polyllama: error: %s\n", e.what());
    std::fflush(stderr);
    polyllama::record_active_run_failure(e.what());
    if (world_size > 1) MPI_Abort(MPI_COMM_WORLD, polyllama::kExitRuntime);
    MPI_Finalize();
    return polyllama::kExitRuntime;
  }
  MPI_Finalize();
  return rc;
}
