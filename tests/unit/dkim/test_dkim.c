/* The DKIM unit tests (one translation unit: test.h keeps its counters in
 * statics): the primitives (prim_tests.inc), then the verifier and the
 * signer (verify_tests.inc). */
#include "../test.h"

/* RFC 8463 A.2: the Ed25519 key of the example (RFC 8032 7.1 test 1) */
#define RFC8463_ED_RECORD "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

#include "prim_tests.inc"
#include "verify_tests.inc"

int main(void)
{
	log_set_level(LOG_WARN);
	dkim_prim_tests();
	dkim_verify_tests();
	return test_done("test_dkim");
}
