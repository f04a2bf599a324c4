int drover_client_stub_; int drover_client_stub_;
