# CUDA kernels (kernels/*.cu, nvcc) and their host emulation build (kernels/emu/, g++), included by
# native/CMakeLists.txt after moe_core exists.
#   - always (where ucontext.h exists): moe_kernels_emu, the same kernel bodies under the SIMT emulation (kernels/simt/simt.h), linked into
#     moe_core so tests (native/tests/test_kernels_*.cpp) run every kernel on the CPU;
#   - when nvcc is found and MOE_CUDA is ON: kernels/*.cu compiled into moe_core for sm_80/86/89/90 with
#     -Xptxas=-v (registers and spills printed per kernel), cudart linked statically, MOE_HAVE_CUDA defined.
# Configure with -DMOE_CUDA=OFF (cmake-js: --CDMOE_CUDA=OFF) or without nvcc on PATH for a CPU-only build.
set(MOE_KERNELS_DIR ${CMAKE_CURRENT_LIST_DIR})

# ---- emulation build (wherever ucontext fibers exist: Linux, macOS; not MSVC) ----
include(CheckIncludeFileCXX)
check_include_file_cxx(ucontext.h MOE_HAVE_UCONTEXT)
if(MOE_HAVE_UCONTEXT)
  add_library(moe_kernels_emu STATIC ${MOE_KERNELS_DIR}/emu/kernels_emu.cpp)
  target_include_directories(moe_kernels_emu PUBLIC ${MOE_KERNELS_DIR}/.. ${MOE_KERNELS_DIR}/../native)
  target_compile_definitions(moe_kernels_emu PUBLIC MOE_HAVE_SIMT_EMU=1)
  target_link_libraries(moe_kernels_emu PUBLIC Threads::Threads)
  target_link_libraries(moe_core PUBLIC moe_kernels_emu)
else()
  message(STATUS "moe: no ucontext.h: SIMT emulation of the kernels (and its tests) not built")
endif()

# ---- nvcc build ----
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER AND MOE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 86 89 90)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  file(GLOB MOE_CUDA_SOURCES CONFIGURE_DEPENDS ${MOE_KERNELS_DIR}/*.cu)
  target_sources(moe_core PRIVATE ${MOE_CUDA_SOURCES})
  # moe_core was created before CUDA was enabled: give it the architectures itself (see TOOLCHAIN.md).
  set_target_properties(moe_core PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                        CUDA_RUNTIME_LIBRARY Static POSITION_INDEPENDENT_CODE ON
                        # CMake 3.25 has no CUDA20 flags for nvcc 13; the kernel bodies only need C++17.
                        CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
  # The directory's compile options (-fno-math-errno, -Wall ...) are g++ flags nvcc rejects: keep them to C/C++.
  get_target_property(_moe_core_opts moe_core COMPILE_OPTIONS)
  if(_moe_core_opts)
    set(_moe_wrapped "")
    foreach(_o IN LISTS _moe_core_opts)
      list(APPEND _moe_wrapped "$<$<COMPILE_LANGUAGE:C,CXX>:${_o}>")
    endforeach()
    set_target_properties(moe_core PROPERTIES COMPILE_OPTIONS "${_moe_wrapped}")
  endif()
  target_compile_options(moe_core PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-v>)
  target_compile_definitions(moe_core PUBLIC MOE_HAVE_CUDA=1)
  target_include_directories(moe_core PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  target_link_libraries(moe_core PRIVATE CUDA::cudart_static)
  message(STATUS "moe: CUDA kernels ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "moe: CUDA kernels OFF (nvcc not found or MOE_CUDA=OFF); emulation build only")
endif()
