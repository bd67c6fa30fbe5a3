#include "store/object_store.h"

namespace hoplite::store {

ObjectEntry::~ObjectEntry() {
  if (parent_) return;
  std::lock_guard lock(core_->mu_);
  core_->alloc_.free(offset, size);
}

Result<std::shared_ptr<ObjectEntry>> ObjectStore::create_view(const ObjectID& id,
                                                              const std::shared_ptr<ObjectEntry>& parent,
                                                              std::uint64_t offset, std::uint64_t size) {
  if (offset > parent->size || size > parent->size - offset)
    return invalid_argument("view outside its object");
  std::lock_guard lock(mu_);
  if (objects_.count(id)) {
    return Status(StatusCode::kAlreadyExists, "object " + id.short_hex() + " already in the local store");
  }
  auto e = std::make_shared<ObjectEntry>(parent, id, offset, size);
  objects_.emplace(id, e);
  return e;
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::create(std::uint64_t capacity) {
  auto arena = Arena::create(capacity);
  if (!arena.is_ok()) return arena.status();
  auto core = std::make_shared<StoreCore>(std::move(arena).value());
  return std::unique_ptr<ObjectStore>(new ObjectStore(std::move(core)));
}

Result<std::shared_ptr<ObjectEntry>> ObjectStore::create_object(const ObjectID& id, std::uint64_t size) {
  std::lock_guard lock(mu_);
  if (objects_.count(id)) {
    return Status(StatusCode::kAlreadyExists, "object " + id.short_hex() + " already in the local store");
  }
  std::uint64_t offset;
  {
    std::lock_guard core_lock(core_->mu_);
    auto r = core_->alloc_.allocate(size);
    if (!r.is_ok())
      return Status(r.status().code(), "put of " + id.short_hex() + ": " + r.status().message());
    offset = r.value();
  }
  auto entry = std::make_shared<ObjectEntry>(core_, id, offset, size, core_->arena_.base() + offset);
  objects_.emplace(id, entry);
  return entry;
}

std::shared_ptr<ObjectEntry> ObjectStore::find(const ObjectID& id) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find(id);
  return it == objects_.end() ? nullptr : it->second;
}

std::shared_ptr<ObjectEntry> ObjectStore::erase(const ObjectID& id) {
  std::lock_guard lock(mu_);
  auto it = objects_.find(id);
  if (it == objects_.end()) return nullptr;
  auto e = std::move(it->second);
  objects_.erase(it);
  return e;
}

void ObjectStore::for_each(const std::function<void(const std::shared_ptr<ObjectEntry>&)>& f) const {
  std::vector<std::shared_ptr<ObjectEntry>> snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot.reserve(objects_.size());
    for (const auto& [id, e] : objects_) snapshot.push_back(e);
  }
  for (const auto& e : snapshot) f(e);
}

std::uint64_t ObjectStore::used() const {
  std::lock_guard lock(core_->mu_);
  return core_->alloc_.used();
}

std::size_t ObjectStore::count() const {
  std::lock_guard lock(mu_);
  return objects_.size();
}

}  // namespace hoplite::store
