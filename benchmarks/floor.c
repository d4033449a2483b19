/* The exec floor of the churn benchmark: the same plugin chains with the same stdin and
 * environment as cni_async sends, exec'd directly, with no library in between.
 *
 * It reads a job file written by churn.py:
 *   "<pods> <concurrency>\n", then per pod "<netns name>\n<steps>\n", then per step
 *   "<phase> <network> <first> <path len> <stdin len> <env len>\n" + path + stdin + env, where env
 *   is NUL-separated. In stdin, the marker @PREV@ stands for the previous plugin's result (ADD)
 *   or the network's final ADD result (CHECK, DEL); phase is 0 ADD, 1 CHECK, 2 DEL.
 * Each of <concurrency> threads takes the next pod: create its network namespace, run its steps
 * in order (posix_spawn, stdin through a pipe, stdout read to EOF, waitpid), delete the namespace.
 * It prints one line per pod: "<ns add> <add> <check> <del> <ns del> <failed step or -1>" in
 * seconds (-2: the namespace could not be made), then "elapsed <seconds>" from the first pod's
 * start to the last one's end. Plugins get SIGPIPE at its default, as cni_async gives them.
 * Build: cc -O2 -pthread -o floor floor.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_NETWORKS 8

struct step {
    int phase, network, first;
    char *path, *stdin_template, *env_block;
    size_t stdin_len, env_len;
    char **envp;
};

struct pod {
    char netns[256];
    int nsteps;
    struct step *steps;
    double times[5];
    int failed;
};

static struct pod *pods;
static int npods;
static atomic_int next_pod;
static posix_spawnattr_t spawn_attr;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { perror("malloc"); exit(2); }
    return p;
}

static void *xrealloc(void *old, size_t n) {
    void *p = realloc(old, n);
    if (!p) { perror("realloc"); exit(2); }
    return p;
}

static char *read_exact(FILE *f, size_t n) {
    char *buf = xmalloc(n + 1);
    if (fread(buf, 1, n, f) != n) { fprintf(stderr, "short job file\n"); exit(2); }
    buf[n] = 0;
    return buf;
}

static char **split_env(char *block, size_t len) {
    int count = 0;
    for (size_t i = 0; i < len; i++) if (block[i] == 0) count++;
    char **envp = xmalloc(sizeof(char *) * (count + 1));
    int k = 0;
    for (size_t i = 0; i < len; i += strlen(block + i) + 1) envp[k++] = block + i;
    envp[k] = NULL;
    return envp;
}

/* stdin with @PREV@ replaced by prev (or removed marker left as-is when prev is NULL). */
static char *render(const struct step *s, const char *prev, size_t *out_len) {
    const char *marker = strstr(s->stdin_template, "@PREV@");
    if (!marker || !prev) {
        *out_len = s->stdin_len;
        return strdup(s->stdin_template);
    }
    size_t before = marker - s->stdin_template, plen = strlen(prev);
    size_t after = s->stdin_len - before - 6;
    char *out = xmalloc(before + plen + after + 1);
    memcpy(out, s->stdin_template, before);
    memcpy(out + before, prev, plen);
    memcpy(out + before + plen, marker + 6, after);
    *out_len = before + plen + after;
    out[*out_len] = 0;
    return out;
}

/* Run one plugin; returns its stdout (malloc'd) or NULL on failure. */
static char *run_plugin(const struct step *s, const char *input, size_t input_len) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC)) return NULL;
    if (pipe2(out, O_CLOEXEC)) { close(in[0]); close(in[1]); return NULL; }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    pid_t pid;
    char *argv[] = {s->path, NULL};
    int rc = posix_spawn(&pid, s->path, &fa, &spawn_attr, argv, s->envp);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) { close(in[1]); close(out[0]); return NULL; }
    size_t off = 0;
    while (off < input_len) {
        ssize_t n = write(in[1], input + off, input_len - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    close(in[1]);
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 4096 > cap) { cap *= 2; buf = xrealloc(buf, cap); }
        ssize_t n = read(out[0], buf + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(out[0]);
    buf[len] = 0;
    int status = 0;
    pid_t reaped;
    while ((reaped = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (reaped < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s failed: %s\n", s->path, buf);
        free(buf);
        return NULL;
    }
    return buf;
}

/* 0, or -1 with nothing left behind. */
static int netns_add(const char *name, int home) {
    char path[512];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0) return -1;
    close(fd);
    int rc = unshare(CLONE_NEWNET);
    if (rc == 0) {
        rc = mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL);
        if (setns(home, CLONE_NEWNET)) { perror("setns"); exit(2); }
    }
    if (rc) unlink(path);
    return rc;
}

static void netns_del(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    umount2(path, MNT_DETACH);
    unlink(path);
}

static void *worker(void *arg) {
    (void)arg;
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) { perror("open own namespace"); exit(2); }
    for (;;) {
        int i = atomic_fetch_add(&next_pod, 1);
        if (i >= npods) break;
        struct pod *p = &pods[i];
        char *final[MAX_NETWORKS] = {0};
        char *chain = NULL;
        double t = now();
        int made = netns_add(p->netns, home) == 0;
        p->failed = made ? -1 : -2;
        p->times[0] = now() - t;
        for (int k = 0; k < p->nsteps && p->failed < 0; k++) {
            struct step *s = &p->steps[k];
            const char *prev;
            if (s->phase == 0) {
                if (s->first) { free(chain); chain = NULL; }
                prev = chain;
            } else {
                prev = final[s->network];
            }
            size_t len;
            char *input = render(s, prev, &len);
            t = now();
            char *output = run_plugin(s, input, len);
            p->times[1 + s->phase] += now() - t;
            free(input);
            if (!output) { p->failed = k; break; }
            if (s->phase == 0) {
                free(chain);
                chain = output;
                free(final[s->network]);
                final[s->network] = strdup(output);
            } else {
                free(output);
            }
        }
        free(chain);
        for (int n = 0; n < MAX_NETWORKS; n++) free(final[n]);
        t = now();
        if (made) netns_del(p->netns);
        p->times[4] = now() - t;
    }
    close(home);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: floor JOBFILE\n"); return 2; }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark worker that started us */
    signal(SIGPIPE, SIG_IGN);         /* a plugin that exits before reading its stdin */
    sigset_t sigpipe;
    sigemptyset(&sigpipe);
    sigaddset(&sigpipe, SIGPIPE);
    posix_spawnattr_init(&spawn_attr);
    posix_spawnattr_setsigdefault(&spawn_attr, &sigpipe);
    posix_spawnattr_setflags(&spawn_attr, POSIX_SPAWN_SETSIGDEF);
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    int concurrency;
    if (fscanf(f, "%d %d\n", &npods, &concurrency) != 2) return 2;
    if (npods < 0 || concurrency < 1) return 2;
    pods = calloc(npods ? npods : 1, sizeof *pods);
    if (!pods) { perror("calloc"); return 2; }
    for (int i = 0; i < npods; i++) {
        struct pod *p = &pods[i];
        if (fscanf(f, "%255s %d\n", p->netns, &p->nsteps) != 2) return 2;
        p->steps = calloc(p->nsteps > 0 ? p->nsteps : 1, sizeof *p->steps);
        if (!p->steps) { perror("calloc"); return 2; }
        for (int k = 0; k < p->nsteps; k++) {
            struct step *s = &p->steps[k];
            size_t plen;
            if (fscanf(f, "%d %d %d %zu %zu %zu\n", &s->phase, &s->network, &s->first, &plen,
                       &s->stdin_len, &s->env_len) != 6)
                return 2;
            if (s->network < 0 || s->network >= MAX_NETWORKS || s->phase < 0 || s->phase > 2) {
                fprintf(stderr, "job file: network %d or phase %d out of range\n", s->network,
                        s->phase);
                return 2;
            }
            s->path = read_exact(f, plen);
            s->stdin_template = read_exact(f, s->stdin_len);
            s->env_block = read_exact(f, s->env_len);
            s->envp = split_env(s->env_block, s->env_len);
        }
    }
    fclose(f);
    pthread_t *threads = calloc(concurrency, sizeof *threads);
    if (!threads) { perror("calloc"); return 2; }
    double started = now();
    for (int i = 0; i < concurrency; i++)
        if (pthread_create(&threads[i], NULL, worker, NULL)) { perror("pthread_create"); return 2; }
    for (int i = 0; i < concurrency; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - started;
    for (int i = 0; i < npods; i++)
        printf("%.6f %.6f %.6f %.6f %.6f %d\n", pods[i].times[0], pods[i].times[1],
               pods[i].times[2], pods[i].times[3], pods[i].times[4], pods[i].failed);
    printf("elapsed %.6f\n", elapsed);
    return 0;
}
