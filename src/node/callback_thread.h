// CallbackThread: runs functions off the progress thread, one at a time, in
// the order they were posted (membership callbacks, application messages).
//
// Ownership: owned by the component that posts to it; the destructor runs
// what is queued, then joins.
// Thread-binding: post() from any thread; the functions run on its own.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace hoplite::node {

class CallbackThread {
 public:
  CallbackThread();
  ~CallbackThread();
  CallbackThread(const CallbackThread&) = delete;
  CallbackThread& operator=(const CallbackThread&) = delete;
  void post(std::function<void()> f);

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool done_ = false;
  std::thread t_;
};

}  // namespace hoplite::node
