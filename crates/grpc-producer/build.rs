//! Generate the tonic services from proto/; messages come from the vote crate
//! (`bandvote_vote::pb`) through `extern_path`, so they are defined once.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(true)
        .file_descriptor_set_path(out.join("bandvote_descriptor.bin"))
        .extern_path(".bandvote.v1.Vote", "::bandvote_vote::pb::Vote")
        .extern_path(".bandvote.v1.Receipt", "::bandvote_vote::pb::Receipt")
        .extern_path(".bandvote.v1.BatchReceipt", "::bandvote_vote::pb::BatchReceipt")
        .extern_path(".confproto.requestId", "::bandvote_vote::pb::RequestId")
        .extern_path(".confproto.replyInfo", "::bandvote_vote::pb::ReplyInfo")
        .compile_protos(&["../../proto/bandvote/v1/vote.proto", "../../proto/getinfo.proto"], &["../../proto"])?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
