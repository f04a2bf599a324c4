int drover_broker_stub_; int drover_broker_stub_;
