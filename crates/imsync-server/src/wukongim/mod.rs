//! The WuKongIM binary protocol (docs/wukongim.md): the socket TangSengDaoDao apps chat over.

pub mod codec;
pub mod crypto;
