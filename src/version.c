/* version: the version string (version.h). */
#include "version.h"

#ifndef STARLING_VERSION
#error "STARLING_VERSION is passed by the Makefile (from the VERSION file)"
#endif

const char st_version[] = STARLING_VERSION;
