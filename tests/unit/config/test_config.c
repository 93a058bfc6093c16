/* Config parsing: values, units, ranges, and errors that name file:line. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "core/config.h"

static char *write_tmp(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/postern-cfg-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

static void test_defaults(void)
{
	struct config c;
	char *err = NULL;
	config_defaults(&c);
	CHECK_INT(1, config_finish(&c, &err), 0);
	CHECK_INT(2, c.smtp_max_message_size, 50 * 1024 * 1024);
	CHECK_INT(3, c.smtp_timeout, 300);
	CHECK_STR(4, c.smtp_listen, "127.0.0.1:2525");
	CHECK_STR(5, c.tls_cert, "./data/tls/cert.pem");
	CHECK(c.hostname && c.hostname[0]);
	config_free(&c);
}

static void test_values(void)
{
	static const struct {
		const char *key, *value;
		int ok;
	} cases[] = {
		{"smtp_max_message_size", "10m", 0},
		{"smtp_max_message_size", "10M", 0},
		{"smtp_max_message_size", "10mb", 0},
		{"smtp_max_message_size", "10x", -1},
		{"smtp_max_message_size", "-1", -1},
		{"smtp_max_message_size", "", -1},
		{"smtp_timeout", "5m", 0},
		{"smtp_timeout", "0", -1},
		{"smtp_max_recipients", "100001", -1},
		{"smtp_auth_plaintext_loopback", "yes", 0},
		{"smtp_auth_plaintext_loopback", "maybe", -1},
		{"no_such_option", "1", -1},
		{"smtp_max_line", "511", -1},
		{"smtp_max_line", "99999999999999999999", -1},
		{"log_level", "loud", -1},
		{"log_level", "debug", 0},
		{"smtp_listen", "", 0},
		{"smtp_listen", "127.0.0.1:25,[::1]:25", 0},
		{"smtp_listen", "127.0.0.1:99999", -1},
		{"smtp_listen", "127.0.0.1:", -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config c;
		char *err = NULL;
		config_defaults(&c);
		CHECK_INT((int)i, config_set(&c, cases[i].key, cases[i].value, &err), cases[i].ok);
		if (cases[i].ok < 0)
			CHECK(err != NULL && strstr(err, cases[i].key) != NULL);
		free(err);
		config_free(&c);
	}
	struct config c;
	char *err = NULL;
	config_defaults(&c);
	config_set(&c, "smtp_timeout", "5m", &err);
	CHECK_INT(100, c.smtp_timeout, 300);
	config_set(&c, "smtp_max_message_size", "2k", &err);
	CHECK_INT(101, c.smtp_max_message_size, 2048);
	config_free(&c);
}

static void test_file(void)
{
	struct config c;
	char *err = NULL;
	config_defaults(&c);
	char *p = write_tmp("# comment\n\nhostname = mx.example.org\n  smtp_listen = *:25, [::1]:25\n");
	CHECK_INT(1, config_load(&c, p, &err), 0);
	CHECK_STR(2, c.hostname, "mx.example.org");
	CHECK_INT(3, config_finish(&c, &err), 0);
	unlink(p);
	config_free(&c);

	config_defaults(&c);
	p = write_tmp("hostname = a\n\nsmtp_timeout = soon\n");
	CHECK_INT(4, config_load(&c, p, &err), -1);
	char want[128];
	snprintf(want, sizeof want, "%s:3: smtp_timeout:", p);
	CHECK(err && strncmp(err, want, strlen(want)) == 0);
	free(err);
	err = NULL;
	unlink(p);
	config_free(&c);

	config_defaults(&c);
	p = write_tmp("just words\n");
	CHECK_INT(5, config_load(&c, p, &err), -1);
	CHECK(err && strstr(err, ":1:") != NULL);
	free(err);
	err = NULL;
	unlink(p);
	config_free(&c);

	config_defaults(&c);
	CHECK_INT(6, config_set(&c, "smtp_listen", "localhost", &err), -1);
	CHECK(err && strstr(err, "smtp_listen") != NULL);
	free(err);
	config_free(&c);
}

int main(void)
{
	test_run("defaults", test_defaults);
	test_run("values", test_values);
	test_run("file", test_file);
	return test_done("test_config");
}
