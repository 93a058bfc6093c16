/* libFuzzer harness for the configuration parser (src/core/config.c).
 * Build: make fuzz (or clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -Isrc tests/fuzz/fuzz_config.c src/core/{config,xmalloc,buf,log}.c)
 * The input is a configuration file, loaded with config_load from a memfd
 * (no files on disk, nothing left behind); then each of its "key=value"
 * lines goes through config_set as a -o override would, and config_finish
 * runs. Checks: an error is "path:line: ..." with a line number inside the
 * file, and a value accepted once is accepted again (setting is idempotent). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_fd = -1;
static char fuzz_path[64];

static void fuzz_load(const uint8_t *data, size_t size)
{
	struct config c;
	char *err = NULL;
	size_t lines = 1;

	x_assert(ftruncate(fuzz_fd, 0) == 0);
	x_assert(pwrite(fuzz_fd, data, size, 0) == (ssize_t)size);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	config_defaults(&c);
	if (config_load(&c, fuzz_path, &err) < 0) {
		size_t plen = strlen(fuzz_path);
		x_assert(err != NULL && strncmp(err, fuzz_path, plen) == 0 && err[plen] == ':');
		long line = strtol(err + plen + 1, NULL, 10);
		x_assert(line >= 1 && (size_t)line <= lines);
		free(err);
		err = NULL;
	}
	if (config_finish(&c, &err) < 0)
		free(err);
	config_free(&c);
}

/* Each line "key=value" (split at the first '=') as an override. */
static void fuzz_set(const uint8_t *data, size_t size)
{
	char *text = xstrndup((const char *)data, size), *save = NULL;
	struct config c;

	config_defaults(&c);
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '='), *err = NULL;
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (config_set(&c, line, eq + 1, &err) < 0) {
			x_assert(err != NULL && err[0] != '\0');
			free(err);
		} else {
			x_assert(config_set(&c, line, eq + 1, &err) == 0);
		}
	}
	char *err = NULL;
	if (config_finish(&c, &err) < 0)
		free(err);
	config_free(&c);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_fd < 0) {
		fuzz_fd = memfd_create("fuzz_config", 0);
		x_assert(fuzz_fd >= 0);
		snprintf(fuzz_path, sizeof fuzz_path, "/proc/self/fd/%d", fuzz_fd);
	}
	fuzz_load(data, size);
	fuzz_set(data, size);
	return 0;
}
