#include "fuse_bridge/inode_table.hpp"

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace litedrive {

std::atomic<uint64_t> inode_table::next_handle_id_{1};

int inode_table::lookup(int parent_fd, const char* name, double timeout, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = timeout;
  e->entry_timeout = timeout;
  int fd = openat(parent_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1) return errno;
  if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
    int err = errno;
    close(fd);
    return err;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  auto key = std::make_pair(e->attr.st_dev, e->attr.st_ino);
  auto i = inodes_.find(key);
  inode* node;
  if (i != inodes_.end()) {
    node = i->second.get();
    close(fd);
  } else {
    auto fresh = std::make_unique<inode>();
    fresh->fd = fd;
    fresh->dev = e->attr.st_dev;
    fresh->ino = e->attr.st_ino;
    node = fresh.get();
    inodes_.emplace(key, std::move(fresh));
  }
  node->nlookup++;
  e->ino = reinterpret_cast<fuse_ino_t>(node);
  return 0;
}

void inode_table::count(inode& node) {
  std::lock_guard<std::mutex> guard{mtx_};
  node.nlookup++;
}

void inode_table::forget(inode* node, uint64_t n) {
  std::lock_guard<std::mutex> guard{mtx_};
  node->nlookup = n >= node->nlookup ? 0 : node->nlookup - n;
  if (node->nlookup == 0) {
    close(node->fd);
    inodes_.erase(std::make_pair(node->dev, node->ino));
  }
}

inode* inode_table::find(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = inodes_.find(std::make_pair(dev, ino));
  return i == inodes_.end() ? nullptr : i->second.get();
}

file_handle* inode_table::open_handle(int fd, int flags, inode* node) {
  return new file_handle{fd, next_handle_id_.fetch_add(1, std::memory_order_relaxed), flags, node};
}

void inode_table::close_handle(file_handle* h) {
  close(h->fd);
  delete h;
}

void inode_table::clear() {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& [key, node] : inodes_)
    close(node->fd);
  inodes_.clear();
}

} // namespace litedrive
