/* Minimal table-friendly unit test helpers. Each test binary has one main()
 * that calls test_run() per case and ends with test_done(), which prints
 * "<binary>: N passed, N failed" and returns the exit status. */
#ifndef POSTERN_TEST_H
#define POSTERN_TEST_H
#include <stdio.h>
#include <string.h>

static int test_failures_total, test_passed_total, test_cur_failed;
static const char *test_cur_name;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("  %s: %s:%d: check failed: %s\n", test_cur_name, __FILE__,        \
			       __LINE__, #cond);                                                   \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)
/* case-numbered integer comparison: "case 2: got 0, want -1" */
#define CHECK_INT(casenum, got, want)                                                              \
	do {                                                                                       \
		long long g_ = (long long)(got), w_ = (long long)(want);                           \
		if (g_ != w_) {                                                                    \
			printf("  %s: case %d: got %lld, want %lld (%s:%d)\n", test_cur_name,      \
			       (int)(casenum), g_, w_, __FILE__, __LINE__);                        \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)
#define CHECK_STR(casenum, got, want)                                                              \
	do {                                                                                       \
		const char *g_ = (got), *w_ = (want);                                              \
		if ((g_ == NULL) != (w_ == NULL) || (g_ && strcmp(g_, w_) != 0)) {                 \
			printf("  %s: case %d: got \"%s\", want \"%s\" (%s:%d)\n", test_cur_name,  \
			       (int)(casenum), g_ ? g_ : "(null)", w_ ? w_ : "(null)", __FILE__,   \
			       __LINE__);                                                          \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)

static inline void test_run(const char *name, void (*fn)(void))
{
	test_cur_name = name;
	test_cur_failed = 0;
	fn();
	if (test_cur_failed) {
		test_failures_total++;
		printf("FAIL %s\n", name);
	} else {
		test_passed_total++;
	}
}

static inline int test_done(const char *binary)
{
	printf("%s: %d passed, %d failed\n", binary, test_passed_total, test_failures_total);
	return test_failures_total ? 1 : 0;
}

#endif
