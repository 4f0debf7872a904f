/* Preloaded by tools/sanitize-tests.sh into the sanitizer build's test processes: dlclose does nothing, so Open
   MPI's components (mca_*.so, unloaded at MPI_Finalize; Open MPI 4.1 has no switch to keep them) stay mapped and
   LeakSanitizer can name the library of their process-lifetime allocations, which tests/fuzz/lsan.supp then
   matches. Without it those frames are "<unknown module>" and no suppression can name them. */
int dlclose(void* handle) {
  (void)handle;
  return 0;
}
