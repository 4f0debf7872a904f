#pragma once
// Agreeing on failure before the next collective: a rank that throws while the others carry on would leave them
// waiting forever in the next collective call (a save on a full disk hung a 2-rank job this way, issue 16).
#include <mpi.h>

#include <functional>
#include <string>

namespace polyllama {

// Runs fn on every rank of `comm` and agrees on the outcome with one MPI_Allreduce: when fn throws on any rank,
// every rank throws together the polyllama::Error of the lowest failing rank (its exit code and message; other
// exceptions count as runtime errors). fn itself must not call collectives over `comm` that could be left
// half-done (a rank failing inside a collective cannot be agreed with: see abort_collective).
void run_agreed(MPI_Comm comm, const std::function<void()>& fn);

// For a failure inside a collective operation (collective HDF5 I/O), where the other ranks may be waiting inside
// the same operation and no agreement can reach them: prints "polyllama: error: <what>" and ends the whole job
// with MPI_Abort(comm, code), so it ends within seconds instead of hanging. With one rank it throws instead.
[[noreturn]] void abort_collective(MPI_Comm comm, int code, const std::string& what);

}  // namespace polyllama
