#include "node/callback_thread.h"

namespace hoplite::node {

CallbackThread::CallbackThread() : t_([this] { run(); }) {}

CallbackThread::~CallbackThread() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_one();
  t_.join();
}

void CallbackThread::post(std::function<void()> f) {
  {
    std::lock_guard lock(mu_);
    q_.push_back(std::move(f));
  }
  cv_.notify_one();
}

void CallbackThread::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return done_ || !q_.empty(); });
    if (q_.empty()) return;
    auto f = std::move(q_.front());
    q_.pop_front();
    lock.unlock();
    f();
    lock.lock();
  }
}

}  // namespace hoplite::node
