/* Runs the no_std artifact: one job dispatched and driven on a PoolRuntime must yield 2 + 3. */
#include <stdio.h>
unsigned int orchestrator_no_std_check(void);
/* The prebuilt alloc crate refers to it; with panic=abort nothing ever unwinds. */
void rust_eh_personality(void) {}
int main(void) {
    unsigned int got = orchestrator_no_std_check();
    printf("no_std dispatch result: %u\n", got);
    return got == 5 ? 0 : 1;
}
