int drover_worker_stub_; int drover_worker_stub_;
