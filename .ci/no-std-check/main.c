/* Runs the no_std artifact and prints every check it makes:
 * 1. one job dispatched and driven on a PoolRuntime with a frozen clock must yield 2 + 3;
 * 2. on a PoolRuntime with a TickTimer (1 ms ticks), advanced one tick at a time from this
 *    loop as a timer interrupt would, a job that fails twice with a 10 ms fixed backoff must
 *    succeed on its third attempt at tick 20, and a job that hangs with a 50 ms budget must
 *    time out at tick 50. */
#include <stdio.h>
#include <stdint.h>

struct tick_report {
    uint32_t retry_value;
    uint32_t retry_attempts;
    uint32_t retry_tick;
    uint32_t timed_out;
    uint32_t timeout_tick;
};

unsigned int orchestrator_no_std_check(void);
void orchestrator_tick_check_start(void);
uint32_t orchestrator_tick(uint32_t n);
struct tick_report orchestrator_tick_check_report(void);
/* The prebuilt alloc crate refers to it; with panic=abort nothing ever unwinds. */
void rust_eh_personality(void) {}

static int failures = 0;

static void check(const char *what, uint32_t got, uint32_t want) {
    int ok = got == want;
    printf("%s %s: %u (expected %u)\n", ok ? "ok  " : "FAIL", what, got, want);
    failures += !ok;
}

int main(void) {
    check("no_std dispatch result on a frozen clock", orchestrator_no_std_check(), 5);

    orchestrator_tick_check_start();
    uint32_t ticks = 0;
    while (!orchestrator_tick(1) && ticks < 1000) {
        ticks++;
    }
    ticks++;
    struct tick_report r = orchestrator_tick_check_report();
    check("tick timer: retried job's value", r.retry_value, 7);
    check("tick timer: retried job's attempts (2 failures, 10 ms fixed backoff)", r.retry_attempts, 3);
    check("tick timer: tick of the retried job's success", r.retry_tick, 20);
    check("tick timer: hanging job timed out", r.timed_out, 1);
    check("tick timer: tick of the timeout (50 ms budget)", r.timeout_tick, 50);
    check("tick timer: ticks advanced until both jobs ended", ticks, 50);
    printf("no_std check: %d passed, %d failed\n", 7 - failures, failures);
    return failures == 0 ? 0 : 1;
}
