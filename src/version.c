/* version: the one definition of the version string (version.h). The
 * Makefile passes STARLING_VERSION to this file only, so that a new version
 * rebuilds one object; a build without it (a stray compile) says so.
 */
#include "version.h"

#ifndef STARLING_VERSION
#define STARLING_VERSION "unknown"
#endif

const char st_version[] = STARLING_VERSION;
