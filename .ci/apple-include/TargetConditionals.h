/* A minimal stand-in for the macOS SDK's TargetConditionals.h, enough for ring's C to be
 * compiled by `.ci/cross-check` (a type-check that never links) without an SDK. */
#ifndef EGRESSD_TARGET_CONDITIONALS_H
#define EGRESSD_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_TV 0
#define TARGET_OS_SIMULATOR 0
#define TARGET_OS_EMBEDDED 0
#if defined(__aarch64__) || defined(__arm64__)
#define TARGET_CPU_ARM64 1
#define TARGET_CPU_X86_64 0
#else
#define TARGET_CPU_ARM64 0
#define TARGET_CPU_X86_64 1
#endif
#endif
