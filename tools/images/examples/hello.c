/* A tiny static binary for the scratch-image example (static-binary.toml): prints who runs it and
 * whether it can write its working directory (which it owns: only a read-only root stops it), then
 * exits 0. Build: gcc -static -Os -o hello hello.c */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    FILE *probe = fopen("probe", "w");
    printf("hello uid=%d gid=%d args=%d workdir=%s\n", (int)getuid(), (int)getgid(), argc - 1,
           probe ? "writable" : "read-only");
    if (probe) {
        fclose(probe);
        unlink("probe");
    }
    (void)argv;
    return 0;
}
