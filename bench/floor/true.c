/* A libc-free `true` for the bench's floor route: no dynamic loader, no libc start-up
 * (whose CPUID probing alone costs ~0.5 ms in this VM), one system call. Built on the
 * host: gcc -nostdlib -static -O2 -o true true.c */
void _start(void) {
#if defined(__x86_64__)
    __asm__ volatile("mov $231, %eax\n\txor %edi, %edi\n\tsyscall"); /* exit_group(0) */
#elif defined(__aarch64__)
    __asm__ volatile("mov x8, #94\n\tmov x0, #0\n\tsvc #0"); /* exit_group(0) */
#else
#error "unsupported architecture"
#endif
    for (;;) {
    }
}
