// Result<T>: a value or an Error, shaped like C++23 std::expected (g++ 12 has no
// <expected> in C++20 mode). Every fallible function in kite returns one.
//
//   Result<int> ParsePort(std::string_view s);
//   Result<void> Open() {
//     int port = TRY(ParsePort("22"));   // returns the Error to our caller on failure
//     if (port == 0) return Err("port 0 is reserved");
//     return {};
//   }
//
// Errors carry a human-readable message (built from the innermost cause outwards with
// Context()), where a system call failed its errno, and a kind that the control socket reports
// as the QMP error class (ErrorKind; almost every error is kGeneric).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace kite {

// What kind of failure an Error is, as QMP names its error classes (qapi/error.json).
enum class ErrorKind {
  kGeneric,          // GenericError: everything else
  kCommandNotFound,  // CommandNotFound: no such command (or not negotiated yet)
  kDeviceNotFound,   // DeviceNotFound: no device with that id
  kDeviceNotActive,  // DeviceNotActive: the device (or job) exists but is not active
  kKvmMissingCap,    // KVMMissingCap: the host's KVM lacks a capability the request needs
};

class [[nodiscard]] Error {
 public:
  Error() = default;
  explicit Error(std::string message, int sys_errno = 0)
      : message_(std::move(message)), errno_(sys_errno) {}
  Error(ErrorKind kind, std::string message) : message_(std::move(message)), kind_(kind) {}

  const std::string& message() const { return message_; }
  // The errno of the failed system call, or 0 when the error is not a system error.
  int sys_errno() const { return errno_; }
  ErrorKind kind() const { return kind_; }

  // Prefixes the message with what the caller was doing: "opening disk.img: No such file".
  Error Context(std::string_view what) && {
    message_ = std::string(what) + ": " + message_;
    return std::move(*this);
  }

 private:
  std::string message_;
  int errno_ = 0;
  ErrorKind kind_ = ErrorKind::kGeneric;
};

// An error with a formatted message.
inline Error Err(std::string message) {
  return Error(std::move(message));
}
// An error of a particular kind: Err(ErrorKind::kDeviceNotFound, "Device 'x' not found").
inline Error Err(ErrorKind kind, std::string message) {
  return Error(kind, std::move(message));
}

// An error for a failed system call: "<what>: <strerror(errno)>", errno kept.
inline Error SysErr(std::string_view what, int sys_errno = errno) {
  return Error(std::string(what) + ": " + std::strerror(sys_errno), sys_errno);
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const {}
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace kite

// TRY(expr): evaluates a Result; on error returns the error from the enclosing function,
// otherwise yields the value (a GNU statement expression, supported by g++ and clang).
#define TRY(expr)                                                      \
  ({                                                                   \
    auto&& kite_try_result_ = (expr);                                  \
    if (!kite_try_result_) return std::move(kite_try_result_).error(); \
    std::move(kite_try_result_).value();                               \
  })

// TRY_CTX(expr, "what"): as TRY, adding context to the error message.
#define TRY_CTX(expr, what)                                                          \
  ({                                                                                 \
    auto&& kite_try_result_ = (expr);                                                \
    if (!kite_try_result_) return std::move(kite_try_result_).error().Context(what); \
    std::move(kite_try_result_).value();                                             \
  })
