#include "actors/lock_registry.hpp"

namespace litedrive {

lock_registry::lock_registry(std::string store, std::chrono::milliseconds max_wait)
    : store_(std::move(store)), max_wait_(max_wait) {}

std::shared_ptr<lock_service> lock_registry::get(const std::string& db_path) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& slot = services_[db_path];
  if (auto live = slot.lock()) return live;
  // Dead entries of other databases go on the way: the map stays as large as what is in use.
  for (auto i = services_.begin(); i != services_.end();) {
    if (i->first != db_path && i->second.expired())
      i = services_.erase(i);
    else
      ++i;
  }
  auto name = db_path;
  if (name.compare(0, store_.size() + 1, store_ + "/") == 0) name.erase(0, store_.size() + 1);
  std::weak_ptr<lock_registry> weak = weak_from_this();
  auto service = std::make_shared<lock_service>(name, max_wait_, [weak, db_path] {
    if (auto self = weak.lock()) self->note_waiters(db_path);
  });
  services_[db_path] = service;
  return service;
}

std::shared_ptr<lock_service> lock_registry::find(const std::string& db_path) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = services_.find(db_path);
  return i == services_.end() ? nullptr : i->second.lock();
}

std::vector<std::pair<std::string, std::shared_ptr<lock_service>>> lock_registry::in_use() const {
  std::vector<std::pair<std::string, std::shared_ptr<lock_service>>> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& [key, weak] : services_)
    if (auto live = weak.lock()) out.emplace_back(key, std::move(live));
  return out;
}

void lock_registry::set_wake(std::function<void()> wake) {
  std::lock_guard<std::mutex> guard{mtx_};
  wake_ = std::move(wake);
}

void lock_registry::note_waiters(const std::string& db_path) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = services_.find(db_path);
    if (i != services_.end()) watched_[db_path] = i->second;
    if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) wake = wake_;
  }
  if (wake) wake();
}

std::vector<std::shared_ptr<lock_service>> lock_registry::with_waiters() {
  std::vector<std::shared_ptr<lock_service>> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto i = watched_.begin(); i != watched_.end();) {
    auto live = i->second.lock();
    if (live && live->has_waiters()) {
      out.push_back(std::move(live));
      ++i;
    } else {
      i = watched_.erase(i);
    }
  }
  return out;
}

} // namespace litedrive
