/* The no-op CNI plugin of benchmark configuration B: it reads its stdin, answers VERSION, prints
 * a fixed result for ADD and nothing for every other command. Built static by churn.py. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *text) {
    size_t left = strlen(text);
    while (left > 0) {
        ssize_t n = write(1, text, left);
        if (n <= 0) return;
        text += n;
        left -= (size_t)n;
    }
}

int main(void) {
    char buffer[65536];
    while (read(0, buffer, sizeof buffer) > 0) {
    }
    const char *command = getenv("CNI_COMMAND");
    if (command == NULL) return 1;
    if (strcmp(command, "ADD") == 0) {
        say("{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\"}],"
            "\"ips\":[{\"address\":\"10.50.0.2/16\",\"interface\":0}]}");
    } else if (strcmp(command, "VERSION") == 0) {
        say("{\"cniVersion\":\"1.1.0\",\"supportedVersions\":"
            "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}");
    }
    return 0;
}
