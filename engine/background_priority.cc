#include "engine/background_priority.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

namespace strata::engine {

void ApplyToThisThread(const BackgroundPriority& p) {
  if (p.idle) {
    sched_param param{};
    param.sched_priority = 0;
    (void)::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &param);
  } else {
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), p.nice);
  }
  // nthreads-var is per thread: only the parallel regions this thread starts follow it.
  if (p.threads > 0) ::omp_set_num_threads(static_cast<int>(p.threads));
}

}  // namespace strata::engine
