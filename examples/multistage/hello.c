/* A small program whose build needs a compiler and C headers, and whose
 * result needs neither. */
#include <stdio.h>
#include <sys/utsname.h>

int main(int argc, char **argv) {
    struct utsname u;
    uname(&u);
    printf("Hello from a %s binary built in a throwaway stage, %s!\n", u.machine,
           argc > 1 ? argv[1] : "world");
    return 0;
}
